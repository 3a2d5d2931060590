"""The broker seam without sockets: the memory broker, the room observer, key names."""

from __future__ import annotations

import orjson
import pytest

from memory_transport import memory_peer as peer
from wirehub.brokers import MemoryBroker, create_broker
from wirehub.brokers.keys import Keys
from wirehub.core.connection import Connection
from wirehub.core.node import Node
from wirehub.errors import NotFound


def queued(conn: Connection) -> list[dict]:
    """What the peer got (an idle connection writes at once) and what still waits for it."""
    sent = conn.transport.sent  # type: ignore[attr-defined]
    return [orjson.loads(t) for t in sent] + [orjson.loads(f.text) for f in (conn._queue or ())]


async def test_memory_broker_sequences_and_keeps_history_through_the_node():
    node = Node(node_id="n1")
    broker = create_broker(None)
    assert isinstance(broker, MemoryBroker)
    node.use_broker(broker)
    a, b = peer("a"), peer("b")
    node.clients.update(a=a, b=b)
    infos: list = []
    node.rooms.join(a, "r")
    await broker.join(a, "r", None, infos.append)
    node.rooms.join(b, "r")
    await broker.join(b, "r", 0, infos.append)
    assert [(i.offset, i.member_count, i.members) for i in infos] == [
        (0, 1, ["a"]),
        (0, 2, ["a", "b"]),
    ]
    assert infos[1].replay is not None and infos[1].replay.recovered
    assert await broker.publish("r", "a", "hi", exclude="a") == 1
    assert broker.publish_nowait("r", "a", "again", exclude=None) == 2
    assert [f["data"] for f in queued(b) if f["type"] == "message"] == ["hi", "again"]
    assert [f["data"] for f in queued(a) if f["type"] == "message"] == ["again"]
    offset, replay = await broker.history("r", 0)
    assert offset == 2 and replay.recovered
    assert [orjson.loads(f)["data"] for f in replay.frames] == ["hi", "again"]
    assert dict(await broker.members("r")) == {"a": "n1", "b": "n1"}
    with pytest.raises(NotFound):
        await broker.members("nowhere")
    assert await broker.send("b", {"type": "direct", "from": "a", "data": 1})
    assert not await broker.send("zed", {"type": "direct", "data": 1})
    assert broker.send_nowait("zed", {"type": "direct", "data": 1}) is False
    total, records = await broker.clients()
    assert total == 2
    assert {(r.id, r.node, r.rooms) for r in records} == {("a", "n1", ("r",)), ("b", "n1", ("r",))}
    total, page = await broker.clients(1, 1)
    assert total == 2 and [r.id for r in page] == ["b"]
    assert (await broker.client("a")).id == "a" and await broker.client("zed") is None
    assert broker.readiness() == {}


async def test_every_message_of_the_node_goes_through_its_broker():
    """One path: hub-side publishes and WebSocket publishes alike reach ``broker.publish``."""

    class Spy(MemoryBroker):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, str, object]] = []

        def publish_nowait(self, room, sender, data, *, exclude):
            self.seen.append((room, sender, data))
            return super().publish_nowait(room, sender, data, exclude=exclude)

    spy = Spy()
    node = Node(broker=spy)
    a = peer("a")
    node.connect(a)
    await node.handle(a, orjson.dumps({"type": "join", "room": "r"}))
    await node.handle(a, orjson.dumps({"type": "publish", "room": "r", "data": 1, "echo": True}))
    node.publish("r", "$hub", 2)
    assert await node.publish_async("r", "$hub", 3) == 3
    assert spy.seen == [("r", "a", 1), ("r", "$hub", 2), ("r", "$hub", 3)]
    got = [f for f in queued(a) if f["type"] in ("message", "ack")]
    assert [(f["type"], f.get("offset")) for f in got] == [
        ("message", 1),
        ("ack", 1),
        ("message", 2),
        ("message", 3),
    ]
    node.disconnect(a)


async def test_observer_hears_first_and_last_local_member():
    node = Node()
    heard: list[tuple[str, str, str, bool]] = []

    class Observer:
        def joined(self, room, conn, first):
            heard.append(("join", room, conn.id, first))

        def left(self, room, conn, last):
            heard.append(("leave", room, conn.id, last))

    node.rooms.observer = Observer()
    a, b = peer("a"), peer("b")
    node.rooms.join(a, "r")
    node.rooms.join(b, "r")
    node.rooms.join(b, "r")  # already a member: nothing new
    node.rooms.leave(a, "r")
    node.rooms.leave_all(b)
    assert heard == [
        ("join", "r", "a", True),
        ("join", "r", "b", False),
        ("leave", "r", "a", False),
        ("leave", "r", "b", True),
    ]


async def test_deliver_fans_out_a_sequenced_frame_and_moves_the_head():
    node = Node()
    a = peer("a")
    node.rooms.join(a, "r")
    assert node.rooms.deliver("r", 7, '{"type":"message","offset":7}') == 1
    assert node.rooms.get("r").offset == 7
    assert node.rooms.deliver("elsewhere", 1, "{}") == 0


def test_every_key_has_the_prefix_and_rooms_round_trip():
    keys = Keys("px")
    names = [
        keys.offset("a:b"),
        keys.stream("a:b"),
        keys.gap("a:b"),
        keys.room_channel("a:b"),
        keys.presence("a:b"),
        keys.nodes,
        keys.node_presence("n"),
        keys.node_clients("n"),
        keys.node_channel("n"),
        keys.clients,
        keys.broadcast,
    ]
    assert all(n.startswith("px:") for n in names) and len(set(names)) == len(names)
    assert keys.room_of_channel(keys.room_channel("a:b")) == "a:b"


def test_unknown_broker_scheme_is_refused():
    with pytest.raises(ValueError, match="no broker for URL scheme 'kafka'"):
        create_broker("kafka://x")


async def test_memory_publish_soon_is_done_before_it_returns_and_keeps_keys():
    node = Node()
    a = peer("a")
    node.connect(a)
    node.rooms.join(a, "r")
    results: list[int | BaseException] = []
    broker = node.broker
    broker.publish_soon("r", "$hub", 1, exclude=None, done=results.append)
    broker.publish_soon("r", "$hub", 2, exclude=None, idempotency_key="k", done=results.append)
    broker.publish_soon("r", "$hub", 2, exclude=None, idempotency_key="k", done=results.append)
    assert results == [1, 2, 2]  # the repeated key answers the first offset, delivers nothing
    assert [f["data"] for f in queued(a) if f["type"] == "message"] == [1, 2]
    node.disconnect(a)
