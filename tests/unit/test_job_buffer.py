"""The job event buffer without sockets: bounds, blocking producers, runs and coalescing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from support import TIMEOUT
from wirehub.jobs.buffer import EventBuffer, coalesce, event_size


def out(i: int, job: str = "j") -> dict:
    return {"type": "job.output", "job_id": job, "data": i}


def wait_until(predicate, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def drain(buffer: EventBuffer) -> list:
    runs = []
    while (run := buffer.take(max_items=3)) is not None:
        runs.append(coalesce(run))
    return runs


def test_a_full_buffer_blocks_the_thread_until_half_is_taken():
    buffer = EventBuffer(max_events=8)
    done = threading.Event()

    def produce() -> None:
        for i in range(20):
            buffer.put_blocking(out(i), 10)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    wait_until(lambda: buffer.waiting == 1)
    assert buffer.pending("j") == 8 and not done.is_set()
    buffer.take(max_items=2)  # 6 left: above half, still blocked
    assert buffer.waiting == 1 and buffer.pending("j") == 6
    buffer.take(max_items=2)  # 4 left: half free, it resumes and fills up again
    wait_until(lambda: buffer.waiting == 1 or done.is_set())
    seen = []
    while not done.is_set() or buffer.pending("j"):
        run = buffer.take(max_items=100)
        if run is not None:
            seen.extend(e["data"] for e in run)
    thread.join(TIMEOUT)
    assert seen == list(range(4, 20)) and buffer.high_water == 8 and buffer.waits >= 2


def test_outputs_coalesce_in_order_but_never_across_another_event():
    buffer = EventBuffer()
    for i in range(4):
        buffer.put(out(i), 10)
    buffer.put({"type": "job.progress", "job_id": "j", "progress": 0.5, "message": None})
    buffer.put(out(4), 10)
    buffer.put({"type": "job.result", "job_id": "j", "result": 5})
    assert drain(buffer) == [
        {"type": "job.output", "job_id": "j", "items": [0, 1, 2]},
        {"type": "job.output", "job_id": "j", "data": 3},
        {"type": "job.progress", "job_id": "j", "progress": 0.5, "message": None},
        {"type": "job.output", "job_id": "j", "data": 4},
        {"type": "job.result", "job_id": "j", "result": 5},
    ]


def test_runs_are_bounded_in_bytes_and_jobs_take_turns():
    buffer = EventBuffer()
    for i in range(3):
        buffer.put(out(i, "a"), 40)
        buffer.put(out(i, "b"), 40)
    first = buffer.take(max_items=10, max_bytes=100)
    second = buffer.take(max_items=10, max_bytes=100)
    assert [e["data"] for e in first] == [0, 1] and first[0]["job_id"] == "a"
    assert [e["data"] for e in second] == [0, 1] and second[0]["job_id"] == "b"
    # One output larger than every bound still goes, alone.
    big = EventBuffer(max_events=2, max_bytes=10)
    assert big.put_blocking(out(0), 1000) and big.take() == [out(0)]


def test_the_terminal_event_closes_the_job_and_releases_its_producer():
    buffer = EventBuffer(max_events=2)
    results = []

    def produce() -> None:
        for i in range(3):
            results.append(buffer.put_blocking(out(i), 10))

    thread = threading.Thread(target=produce)
    thread.start()
    wait_until(lambda: buffer.waiting == 1)
    # Never refused, never blocking, after the outputs queued before it.
    assert buffer.put({"type": "job.failed", "job_id": "j", "error": {}, "state": "failed"})
    thread.join(TIMEOUT)
    assert results == [True, True, False] and buffer.dropped == 1
    assert [e["type"] for e in drain(buffer)] == ["job.output", "job.failed"]
    assert not buffer.put_blocking(out(9), 10)  # a late event of an ended job
    assert buffer.take() is None


def test_offer_refuses_past_its_slack_and_aput_waits_for_room():
    async def scenario() -> None:
        buffer = EventBuffer(max_events=4)
        assert all(buffer.offer(out(i), 10, slack=2) for i in range(8))
        assert not buffer.offer(out(8), 10, slack=2) and buffer.waits == 1
        waiter = asyncio.ensure_future(buffer.aput(out(8), 10))
        await asyncio.sleep(0)
        assert not waiter.done() and buffer.waiting == 1
        buffer.take(max_items=6)  # 2 left: room again
        assert await asyncio.wait_for(waiter, TIMEOUT) is True
        assert [e["data"] for e in buffer.take(max_items=10)] == [6, 7, 8]

    asyncio.run(scenario())


def test_event_size_refuses_what_json_cannot_carry():
    assert event_size("job.output", {"data": {"i": 1}}) == len('{"i":1}') + 1
    with pytest.raises(TypeError):
        event_size("job.output", {"data": object()})
