"""Room semantics without sockets: a recording transport stands in for the peer."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from memory_transport import memory_peer as peer
from wirehub.core import history as history_module
from wirehub.core import rooms as rooms_module
from wirehub.core.connection import Connection
from wirehub.core.history import History
from wirehub.core.rooms import RoomPolicy, RoomRegistry
from wirehub.errors import LimitExceeded


def queued(conn: Connection) -> list[dict]:
    """What the peer got (an idle connection writes at once) and what still waits for it."""
    sent = conn.transport.sent  # type: ignore[attr-defined]
    return [orjson.loads(t) for t in sent] + [orjson.loads(f.text) for f in (conn._queue or ())]


async def test_offsets_start_at_one_and_increase():
    rooms = RoomRegistry()
    a = peer("a")
    rooms.join(a, "r")
    offsets = [rooms.publish("r", "srv", i)[0] for i in range(5)]
    assert offsets == [1, 2, 3, 4, 5]
    assert [f["offset"] for f in queued(a)] == [1, 2, 3, 4, 5]


async def test_publish_encodes_once_and_shares_the_frame():
    rooms = RoomRegistry()
    members = [peer(f"p{i}") for i in range(3)]
    for m in members:
        rooms.join(m, "r")
    rooms.publish("r", "srv", {"x": 1})
    last = [m._queue[-1] for m in members]  # not started: every frame waits in the queue
    assert all(frame is last[0] for frame in last)  # one envelope for every member


async def test_presence_events_auto_turn_off_above_the_limit():
    rooms = RoomRegistry([RoomPolicy(pattern="big", presence_limit=2)])
    a, b, c = peer("a"), peer("b"), peer("c")
    rooms.join(a, "big")
    rooms.join(b, "big")  # 1 member before: event to a
    rooms.join(c, "big")  # 2 members before -> still <= limit: events to a and b
    d = peer("d")
    rooms.join(d, "big")  # 3 members: above the limit, no events
    events = [f for f in queued(a) if f["type"] == "presence"]
    assert [e["client_id"] for e in events] == ["b", "c"]


async def test_presence_events_can_be_forced_off_per_pattern():
    rooms = RoomRegistry([RoomPolicy(pattern="feed:*", presence_events=False)])
    a, b = peer("a"), peer("b")
    rooms.join(a, "feed:1")
    rooms.join(b, "feed:1")
    rooms.leave(b, "feed:1")
    assert queued(a) == []
    rooms.join(b, "chat")
    rooms.join(a, "chat")
    assert queued(b) == [
        {"type": "presence", "room": "chat", "event": "join", "client_id": "a", "kind": "ws"}
    ]


async def test_max_members_is_enforced():
    rooms = RoomRegistry([RoomPolicy(pattern="*", max_members=1)])
    rooms.join(peer("a"), "r")
    with pytest.raises(LimitExceeded, match="room 'r' is full"):
        rooms.join(peer("b"), "r")


def test_history_replays_everything_after_since():
    h = History(size=10, ttl=60)
    for offset in range(1, 6):
        h.append(offset, 1e12, f"m{offset}")
    replay = h.since(2)
    assert replay.frames == ["m3", "m4", "m5"] and replay.recovered
    assert h.since(0).frames == ["m1", "m2", "m3", "m4", "m5"]
    assert h.since(5).frames == [] and h.since(5).recovered


def test_history_says_not_recovered_when_messages_fell_out():
    h = History(size=3, ttl=60)
    for offset in range(1, 7):
        h.append(offset, 1e12, f"m{offset}")
    assert h.first_offset == 4
    partial = h.since(1)
    assert partial.frames == ["m4", "m5", "m6"] and partial.recovered is False
    exact = h.since(3)
    assert exact.frames == ["m4", "m5", "m6"] and exact.recovered is True


def test_history_ages_out_and_says_so():
    h = History(size=10, ttl=60)
    h.append(1, 0.0, "old")  # 1970: long expired
    h.append(2, 1e12, "new")
    replay = h.since(0)
    assert replay.frames == ["new"] and replay.recovered is False


def test_history_from_the_future_is_not_recovered():
    h = History(size=10, ttl=60)
    h.append(1, 1e12, "m1")
    assert h.since(50).recovered is False  # the hub restarted and lost offsets


def test_the_old_import_path_of_history_still_works():
    # History moved to core/history.py; code written against core.rooms keeps working.
    assert rooms_module.History is history_module.History
    assert rooms_module.Replay is history_module.Replay
    assert isinstance(RoomRegistry().ensure("r").history, rooms_module.History)


async def test_slow_consumer_is_closed_and_others_keep_receiving():
    slow_seen = []
    rooms = RoomRegistry()
    fast = peer("fast")
    slow = peer("slow", max_queue=3, on_slow=slow_seen.append)
    rooms.join(fast, "r")
    rooms.join(slow, "r")
    for i in range(10):
        rooms.publish("r", "srv", i)
    assert slow_seen == [slow]
    assert not slow.open and slow.close_code == 4001
    assert [f["data"] for f in queued(fast) if f["type"] == "message"] == list(range(10))
    await slow.wait_closed()


async def test_queue_bound_in_bytes():
    conn = peer("a", max_queue=100, max_queue_bytes=100)
    assert conn.send("x" * 60)
    assert not conn.send("y" * 60)
    assert conn.close_code == 4001
    await conn.wait_closed()


async def test_collect_drops_empty_rooms_without_history():
    rooms = RoomRegistry()
    a = peer("a")
    rooms.join(a, "keep")
    rooms.join(a, "gone")
    rooms.publish("keep", "srv", 1)
    rooms.leave_all(a)
    assert rooms.collect(now=0) == 1
    assert "keep" in rooms and "gone" not in rooms


class Gate:
    """A transport whose socket can be 'full': send waits until the gate opens."""

    kind = "ws"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.out: list[str] = []
        self.closed: tuple[int, str] | None = None

    coalesces = False

    def try_writelines(self, outs):
        return False

    def try_write(self, out):
        return False  # no fast path: every frame goes through send

    async def send(self, frame):
        await self.open.wait()
        self.out.append(frame.text)

    async def close(self, code, reason):
        self.closed = (code, reason)

    def abort(self):
        pass


async def idle(conn: Connection) -> None:
    while not conn._idle:
        await asyncio.sleep(0)


async def test_a_declining_socket_keeps_order_when_it_fills_up():
    gate = Gate()
    conn = Connection("a", gate)
    conn.start()
    await idle(conn)
    assert conn.send("1") and conn.queued == 1  # declined: queued for the writer task
    while not gate.out:
        await asyncio.sleep(0)
    assert gate.out == ["1"]
    await idle(conn)  # the writer ended with the queue empty
    gate.open.clear()  # the socket is full from now on
    for frame in ("2", "3", "4"):
        assert conn.send(frame)
    await asyncio.sleep(0)
    assert gate.out == ["1"] and conn.queued == 2  # "2" is with the writer, waiting
    gate.open.set()
    while conn.queued or len(gate.out) < 4:
        await asyncio.sleep(0)
    assert gate.out == ["1", "2", "3", "4"]
    assert conn.frames_out == 4


async def test_a_peer_blocked_longer_than_max_lag_is_a_slow_consumer():
    gate = Gate()
    slow_seen = []
    conn = Connection("a", gate, max_lag=0.05, on_slow=slow_seen.append)
    conn.start()
    await idle(conn)
    gate.open.clear()
    assert conn.send("stuck")  # handed to the writer, which waits
    assert conn.send("queued")  # the queue is far from full...
    await asyncio.sleep(0.1)
    assert not conn.send("late")  # ...but the peer has taken nothing for too long
    assert slow_seen == [conn] and conn.close_code == 4001
    await conn.wait_closed()
    assert gate.closed == (4001, "slow consumer: outbound queue full")


async def test_closing_while_a_write_waits_drops_it_cleanly():
    gate = Gate()
    conn = Connection("a", gate, close_timeout=0.1)
    conn.start()
    await idle(conn)
    gate.open.clear()
    conn.send("never")
    conn.close(4003, "bye")
    await conn.wait_closed()
    assert gate.out == [] and gate.closed == (4003, "bye")


async def test_a_transport_that_breaks_marks_the_peer_gone():
    class Broken(Gate):
        async def send(self, frame):
            raise ConnectionResetError("peer reset")

    conn = Connection("a", Broken())
    conn.start()
    await idle(conn)
    assert conn.send("x") is True  # taken; the writer finds the socket broken
    while conn.open:
        await asyncio.sleep(0)
    assert conn.send("y") is False  # gone: nothing more is taken
