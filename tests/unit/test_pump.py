"""The pump without I/O: order, the bound, backpressure, the loop's time budget, drain and close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from support import TIMEOUT
from wirehub.core.pump import Pump


class Recorder:
    """A handler that records what it got; ``gate`` (when set) holds it before each item."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.gate: asyncio.Event | None = None
        self.fail_on: set[Any] = set()

    async def __call__(self, item: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.seen.append(item)
        if item in self.fail_on:
            raise ValueError(f"bad item {item!r}")


async def test_items_are_handled_once_each_in_order():
    handler = Recorder()
    pump: Pump[int] = Pump(handler, maxsize=100)
    pump.start()
    for i in range(50):
        assert pump.offer(i)
    pump.push(50)
    await pump.put(51)
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == list(range(52))
    assert pump.handled == 52 and len(pump) == 0
    await pump.close()


async def test_items_queued_before_start_wait_for_it():
    handler = Recorder()
    pump: Pump[str] = Pump(handler, maxsize=4)
    assert pump.offer("a") and pump.offer("b")
    await asyncio.sleep(0)
    assert handler.seen == []
    pump.start()
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == ["a", "b"]
    await pump.close()


async def test_offer_is_refused_past_the_bound_and_push_is_not_counted():
    handler = Recorder()
    pump: Pump[int] = Pump(handler, maxsize=3)
    assert [pump.offer(i) for i in range(5)] == [True, True, True, False, False]
    assert pump.full
    pump.push(99)  # never refused, and takes no room
    assert len(pump) == 4
    pump.start()
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == [0, 1, 2, 99]
    assert not pump.full and pump.offer(3)
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen[-1] == 3
    await pump.close()


async def test_put_waits_for_room_and_keeps_the_order():
    handler = Recorder()
    handler.gate = asyncio.Event()
    pump: Pump[int] = Pump(handler, maxsize=2)
    pump.start()
    assert pump.offer(0) and pump.offer(1)
    await asyncio.sleep(0)  # the consumer takes 0 and waits at the gate
    assert pump.offer(2)
    assert not pump.offer(3)
    putter = asyncio.ensure_future(pump.put(3))
    await asyncio.sleep(0)
    assert not putter.done()  # full: the producer waits
    handler.gate.set()
    await asyncio.wait_for(putter, TIMEOUT)
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == [0, 1, 2, 3]
    await pump.close()


async def test_a_cancelled_put_queues_nothing_and_passes_its_turn_on():
    handler = Recorder()
    handler.gate = asyncio.Event()
    pump: Pump[str] = Pump(handler, maxsize=1)
    pump.start()
    pump.offer("first")
    await asyncio.sleep(0)  # taken, held at the gate
    pump.offer("second")
    cancelled = asyncio.ensure_future(pump.put("cancelled"))
    waiting = asyncio.ensure_future(pump.put("third"))
    await asyncio.sleep(0)
    cancelled.cancel()
    handler.gate.set()
    await asyncio.wait_for(waiting, TIMEOUT)
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == ["first", "second", "third"]
    await pump.close()


async def test_a_failing_item_is_logged_and_the_next_goes_on(caplog):
    handler = Recorder()
    handler.fail_on = {1}
    pump: Pump[int] = Pump(handler, name="test-pump")
    pump.start()
    for i in range(3):
        pump.offer(i)
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == [0, 1, 2]
    assert "test-pump: handling 1 failed" in caplog.text
    assert (pump.errors, pump.handled) == (1, 3)
    await pump.close()


async def test_it_yields_to_the_loop_once_its_budget_is_spent():
    handler = Recorder()  # never awaits: only the budget lets others run
    pump: Pump[int] = Pump(handler, budget=0.0)
    pump.start()
    others: list[int] = []
    for i in range(5):
        pump.offer(i)
    asyncio.get_running_loop().call_soon(lambda: others.append(len(handler.seen)))
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == list(range(5))
    # A budget of 0 yields after every item: the callback ran between two items.
    assert pump.yields == 5
    assert others and others[0] < 5
    await pump.close()


async def test_within_its_budget_it_does_not_yield():
    handler = Recorder()
    pump: Pump[int] = Pump(handler, budget=60.0)
    pump.start()
    await asyncio.sleep(0)  # the consumer waits for work
    others: list[int] = []
    for i in range(200):
        pump.offer(i)
    asyncio.get_running_loop().call_soon(lambda: others.append(len(handler.seen)))
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert pump.yields == 0
    assert others == [200]  # the whole batch went in one slice
    await pump.close()


async def test_drain_waits_only_for_what_was_queued_before_it():
    handler = Recorder()
    handler.gate = asyncio.Event()
    pump: Pump[int] = Pump(handler)
    pump.start()
    pump.offer(1)
    drained = asyncio.ensure_future(pump.drain())
    pump.offer(2)
    await asyncio.sleep(0)
    assert not drained.done()
    handler.gate.set()
    await asyncio.wait_for(drained, TIMEOUT)
    assert handler.seen[0] == 1
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == [1, 2]
    await pump.close()
    await asyncio.wait_for(pump.drain(), TIMEOUT)  # nothing queued: at once, even stopped


async def test_close_drains_first_and_is_idempotent():
    handler = Recorder()
    pump: Pump[int] = Pump(handler)
    pump.start()
    for i in range(10):
        pump.offer(i)
    assert await pump.close(timeout=TIMEOUT)
    assert handler.seen == list(range(10))
    assert not pump.running
    assert await pump.close(timeout=TIMEOUT)


async def test_close_past_its_timeout_stops_and_keeps_the_rest_for_the_next_start():
    handler = Recorder()
    handler.gate = asyncio.Event()
    pump: Pump[int] = Pump(handler)
    pump.start()
    for i in range(3):
        pump.offer(i)
    assert not await pump.close(timeout=0.01)
    assert not pump.running and handler.seen == []
    assert len(pump) == 2  # the item being handled was cut short by the stop
    handler.gate.set()
    pump.start()
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == [1, 2]
    await pump.close()


async def test_a_pump_over_a_source_drains_it_when_woken():
    source = list(range(6))
    handler = Recorder()
    pump: Pump[int] = Pump(handler, take=lambda: source.pop(0) if source else None, budget=0.0)
    with pytest.raises(RuntimeError, match="drains a source"):
        pump.offer(1)
    pump.start()
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == list(range(6))
    source.extend([6, 7])
    pump.wake()
    await asyncio.wait_for(pump.drain(), TIMEOUT)
    assert handler.seen == list(range(8))
    source.append(8)
    assert await pump.close(timeout=TIMEOUT)  # drains what the source still had
    assert handler.seen[-1] == 8


def test_bad_bounds_are_refused():
    async def handle(item: object) -> None:
        return None

    with pytest.raises(ValueError, match="maxsize"):
        Pump(handle, maxsize=0)
    with pytest.raises(ValueError, match="budget"):
        Pump(handle, budget=-1)
