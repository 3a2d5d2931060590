"""The broker seam without sockets: the memory broker, the room observer, key names."""

from __future__ import annotations

import orjson
import pytest

from wirehub.brokers import MemoryBroker, create_broker
from wirehub.brokers.keys import Keys
from wirehub.core.connection import Connection
from wirehub.core.node import Node
from wirehub.errors import NotFound


class Recorder:
    kind = "ws"

    async def send(self, frame):
        pass

    async def close(self, code, reason):
        pass

    def abort(self):
        pass


def peer(client_id: str) -> Connection:
    return Connection(client_id, Recorder())


def queued(conn: Connection) -> list[dict]:
    return [orjson.loads(f) for f in conn._queue]


async def test_memory_broker_is_a_view_of_the_node():
    node = Node(node_id="n1")
    broker = create_broker(node, None)
    assert isinstance(broker, MemoryBroker) and broker.distributed is False
    a, b = peer("a"), peer("b")
    node.clients.update(a=a, b=b)
    assert await broker.join(a, "r", None) is not None
    await broker.join(b, "r", None)
    assert await broker.publish("r", "a", "hi", exclude="a") == 1
    assert [f["data"] for f in queued(b) if f["type"] == "message"] == ["hi"]
    offset, replay = await broker.history("r", 0)
    assert offset == 1 and replay.recovered
    assert [orjson.loads(f)["data"] for f in replay.frames] == ["hi"]
    assert await broker.members("r") == {"a": "n1", "b": "n1"}
    with pytest.raises(NotFound):
        await broker.members("nowhere")
    assert await broker.send("b", {"type": "direct", "from": "a", "data": 1})
    assert not await broker.send("zed", {"type": "direct", "data": 1})
    records = await broker.clients()
    assert {(r.id, r.node, r.rooms) for r in records} == {("a", "n1", ("r",)), ("b", "n1", ("r",))}
    assert broker.readiness() == {}


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
        create_broker(Node(), "kafka://x")
