"""Idempotency keys without sockets: the key check, the bounded key table (with an
injected clock, so a window passes without sleeping), and the memory broker's
one-step check through the node."""

from __future__ import annotations

import orjson
import pytest

from memory_transport import memory_peer as peer
from wirehub.brokers import MemoryBroker, create_broker
from wirehub.brokers.keys import Keys
from wirehub.core.connection import Connection
from wirehub.core.idempotency import MAX_KEY_LENGTH, KeyTable, check_key
from wirehub.core.node import Node
from wirehub.errors import BadRequest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(conn: Connection) -> list[object]:
    frames = [orjson.loads(f.text) for f in (conn._queue or ())]
    return [f["data"] for f in frames if f["type"] == "message"]


def test_check_key_accepts_a_bounded_printable_string_and_names_what_is_wrong():
    assert check_key(None) is None
    assert check_key("order-17 retry") == "order-17 retry"
    assert check_key("k" * MAX_KEY_LENGTH) == "k" * MAX_KEY_LENGTH
    cases = {
        "k" * (MAX_KEY_LENGTH + 1): "field 'idempotency_key' is longer than 128 characters",
        "": "field 'idempotency_key' must be a non-empty string, got an empty string",
        17: "field 'idempotency_key' must be a non-empty string, got integer",
        "a\tb": "field 'idempotency_key' must not contain control characters",
    }
    for value, text in cases.items():
        with pytest.raises(BadRequest) as info:
            check_key(value)
        assert str(info.value) == text
        assert info.value.code == "bad_request"


def test_a_key_is_remembered_per_room_for_the_window_then_forgotten():
    clock = Clock()
    table = KeyTable(window=10.0, max_keys=100, clock=clock)
    assert table.get("r", "k") is None
    table.put("r", "k", 7)
    assert table.get("r", "k") == 7
    assert table.get("other", "k") is None  # keys are per room
    clock.now += 9.9
    assert table.get("r", "k") == 7
    clock.now += 0.1
    assert table.get("r", "k") is None and len(table) == 0


def test_expired_keys_leave_from_the_front_without_a_scan():
    clock = Clock()
    table = KeyTable(window=5.0, max_keys=100, clock=clock)
    for i in range(10):
        table.put("r", f"k{i}", i + 1)
        clock.now += 1.0
    # now = start + 10: keys put at start+0..start+5 have expired, six of them.
    assert table.get("r", "k9") == 10
    assert len(table) == 4
    assert [table.get("r", f"k{i}") for i in range(6, 10)] == [7, 8, 9, 10]


def test_the_table_is_bounded_and_evicts_the_oldest_key_first():
    table = KeyTable(window=300.0, max_keys=3, clock=Clock())
    for i in range(5):
        table.put("r", f"k{i}", i + 1)
    assert len(table) == 3 and table.evicted == 2
    assert [table.get("r", f"k{i}") for i in range(5)] == [None, None, 3, 4, 5]
    with pytest.raises(ValueError):
        KeyTable(window=0)
    with pytest.raises(ValueError):
        KeyTable(max_keys=0)


async def test_the_memory_broker_delivers_a_keyed_publish_once_and_answers_its_offset():
    node = Node(node_id="n1")
    broker = create_broker(None, idempotency_window=60.0, idempotency_max_keys=10)
    assert isinstance(broker, MemoryBroker) and broker.idempotency.max_keys == 10
    node.use_broker(broker)
    member = peer("m")
    node.clients["m"] = member
    node.rooms.join(member, "r")
    node.rooms.join(member, "s")
    first = await node.publish_async("r", "$hub", "once", idempotency_key="k")
    again = await node.publish_async("r", "$hub", "twice", idempotency_key="k")
    other = await node.publish_async("r", "$hub", "other key", idempotency_key="k2")
    unkeyed = await node.publish_async("r", "$hub", "no key")
    elsewhere = await node.publish_async("s", "$hub", "other room", idempotency_key="k")
    assert (first, again, other, unkeyed, elsewhere) == (1, 1, 2, 3, 1)
    assert messages(member) == ["once", "other key", "no key", "other room"]
    assert broker.duplicates == 1
    _, replay = await broker.history("r", 0)
    assert [orjson.loads(f)["data"] for f in replay.frames] == ["once", "other key", "no key"]
    with pytest.raises(BadRequest):
        await node.publish_async("r", "$hub", "bad", idempotency_key="x" * 200)
    assert messages(member)[-1] == "other room"


def test_redis_key_names_keep_room_and_key_apart():
    keys = Keys("p")
    assert keys.idempotency("a:b", "c") == "p:idem:a:b c"
    # A room name has no whitespace, so the first space ends it: no two pairs collide.
    assert keys.idempotency("a", "b:c") != keys.idempotency("a:b", "c")
