"""The bounded room table: idle queues, eviction, refusal, remembered offsets (no sockets).

A full table must never cost a walk over every room: a new room takes the
place of the room idle the longest, a room with members is never evicted, and
a client rejoining an evicted room with ``since`` is told ``recovered: false``.
"""

from __future__ import annotations

import time

import orjson
import pytest

from memory_transport import memory_peer as peer
from wirehub.core.rooms import RoomPolicy, RoomRegistry
from wirehub.errors import LimitExceeded


def full_table(size: int, **kwargs) -> RoomRegistry:
    """``size`` idle rooms ``h0``… (oldest first), each with one message of history."""
    rooms = RoomRegistry(max_rooms=size, **kwargs)
    for i in range(size):
        rooms.publish(f"h{i}", "srv", i)
    return rooms


def test_a_new_room_in_a_full_table_evicts_the_room_idle_longest():
    rooms = full_table(3)
    rooms.join(peer("a"), "new")
    assert len(rooms) == 3 and rooms.evicted == 1
    assert "h0" not in rooms and {"h1", "h2", "new"} <= {r.name for r in rooms}


def test_a_message_into_an_idle_room_makes_it_the_last_to_go():
    rooms = full_table(3)
    rooms.publish("h0", "srv", "still in use")
    rooms.publish("x", "srv", 1)
    rooms.publish("y", "srv", 1)
    assert "h0" in rooms and "h1" not in rooms and "h2" not in rooms


def test_a_room_left_empty_goes_to_the_back_of_the_queue():
    rooms = full_table(3)
    a = peer("a")
    rooms.join(a, "h0")
    rooms.leave(a, "h0")  # idle again, but the most recently
    rooms.ensure("x")
    assert "h0" in rooms and "h1" not in rooms


def test_rooms_with_members_are_never_evicted_and_a_full_busy_table_refuses():
    rooms = RoomRegistry(max_rooms=2)
    a, b = peer("a"), peer("b")
    rooms.join(a, "r1")
    rooms.join(b, "r2")
    with pytest.raises(LimitExceeded) as refused:
        rooms.join(peer("c"), "r3")
    assert str(refused.value) == "the hub holds its maximum of 2 rooms, all with members"
    assert refused.value.to_wire() == {
        "code": "limit_exceeded",
        "message": "the hub holds its maximum of 2 rooms, all with members",
        "room": "r3",
        "limit": 2,
    }
    assert {r.name for r in rooms} == {"r1", "r2"} and rooms.evicted == 0
    rooms.leave(b, "r2")  # one room idle: the next new room may take its place
    rooms.join(peer("c"), "r3")
    assert {r.name for r in rooms} == {"r1", "r3"}


def test_an_empty_room_without_history_goes_before_an_older_one_with_history():
    rooms = full_table(3)
    a = peer("a")
    rooms.leave(a, "h2")
    rooms.join(a, "bare")  # evicts h0 (oldest, with history) to make room
    rooms.leave(a, "bare")  # nothing to recover there
    rooms.ensure("x")
    assert "bare" not in rooms and {"h1", "h2", "x"} == {r.name for r in rooms}
    assert rooms.evicted == 1 and rooms.collected == 1


def test_an_aged_out_room_is_collected_before_an_older_live_one_is_evicted():
    short = RoomPolicy(pattern="short:*", history_ttl=60)
    rooms = RoomRegistry([short], max_rooms=2)
    now = time.time()
    rooms.publish("long", "srv", 1, ts=now - 120)  # older, but its history (1 h) is live
    rooms.publish("short:1", "srv", 1, ts=now - 90)  # aged out: nothing left to lose
    rooms.ensure("new")
    assert "long" in rooms and "short:1" not in rooms
    assert rooms.evicted == 0 and rooms.collected == 1


def test_rejoining_an_evicted_room_with_since_is_not_recovered():
    rooms = RoomRegistry(max_rooms=2)
    a = peer("a")
    for i in range(5):
        rooms.publish("chat", "srv", i)
    rooms.publish("x", "srv", 1)
    rooms.publish("y", "srv", 1)  # table full: chat (idle the longest) is evicted
    assert "chat" not in rooms and rooms.evicted == 1
    # Someone publishes in a new room of the same name...
    for i in range(3):
        rooms.publish("chat", "srv", f"new {i}")
    room, _ = rooms.join(a, "chat")
    # ...its offsets continue: a client that saw offset 2 is not told 3..5 came back.
    assert room.offset == 8
    replay = room.history.since(2)
    assert replay.recovered is False and replay.first_offset == 6
    assert [orjson.loads(f)["data"] for f in replay.frames] == ["new 0", "new 1", "new 2"]


def test_a_client_that_saw_everything_before_eviction_has_missed_nothing():
    rooms = RoomRegistry(max_rooms=1)
    for i in range(4):
        rooms.publish("chat", "srv", i)
    rooms.ensure("x")  # chat evicted
    rooms.ensure("chat")  # x evicted, chat back with no history
    room = rooms.get("chat")
    assert room.offset == 4
    assert room.history.since(4).recovered is True
    assert room.history.since(3).recovered is False
    assert room.history.since(0).recovered is False


def test_remembered_offsets_are_bounded_oldest_forgotten_first():
    rooms = RoomRegistry(max_rooms=1, remembered_offsets=2)
    for name in ("a", "b", "c", "d"):
        rooms.publish(name, "srv", 1)  # each evicts the one before
    assert list(rooms._gone) == ["b", "c"]  # "a" forgotten
    rooms.publish("c", "srv", 1)  # remembered: continues
    assert rooms.get("c").offset == 2
    rooms.publish("a", "srv", 1)  # forgotten: starts at 1 again
    assert rooms.get("a").offset == 1


def test_collect_takes_at_most_limit_rooms_per_call():
    rooms = RoomRegistry()
    a = peer("a")
    for i in range(25):
        rooms.join(a, f"r{i}")
    rooms.leave_all(a)
    assert rooms.idle == 25
    assert [rooms.collect(time.time(), limit=10) for _ in range(4)] == [10, 10, 5, 0]
    assert len(rooms) == 0


def test_collect_keeps_rooms_whose_history_is_live():
    rooms = RoomRegistry([RoomPolicy(pattern="*", history_ttl=60)])
    now = time.time()
    rooms.publish("old", "srv", 1, ts=now - 61)
    rooms.publish("fresh", "srv", 1, ts=now)
    assert rooms.collect(now) == 1
    assert "fresh" in rooms and "old" not in rooms
    assert rooms.collect(now + 61) == 1 and len(rooms) == 0


def _join_cost(rooms: RoomRegistry, joins: int = 1000) -> float:
    """Seconds per join of a new name (with a publish, so it evicts a room with history)."""
    a = peer("a")
    names = [f"new{i}-{time.perf_counter_ns()}" for i in range(joins)]
    started = time.perf_counter()
    for name in names:
        rooms.join(a, name)
        rooms.publish(name, "a", 1)
        rooms.leave(a, name)
    return (time.perf_counter() - started) / joins


def test_a_join_in_a_full_table_costs_the_same_at_any_size():
    # A walk over the table (the bug) makes a join at 20 000 rooms ~40x dearer
    # than at 500; queue heads only keep it flat. Best of 3 against noise.
    small_table, big_table = full_table(500), full_table(20_000)
    small = min(_join_cost(small_table) for _ in range(3))
    big = min(_join_cost(big_table) for _ in range(3))
    assert len(big_table) == 20_000 and big_table.evicted == 3000
    assert big < 3 * small, (small, big)
