"""What a frame does to the node, without sockets: ``Node.handle`` on an in-memory transport.

Every inbound frame gets exactly one reply or one ``error`` (echoing ``ref``), and the
connection goes on after an error; these tests drive the node the way the web and TCP
adapters do (``connect`` / ``handle`` / ``disconnect``) and read what each peer was sent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from memory_transport import MemoryTransport
from wirehub.core.connection import Connection
from wirehub.core.node import Node
from wirehub.core.protocol import CloseCode, encode
from wirehub.core.rooms import MAX_MEMBERS_LISTED, RoomPolicy
from wirehub.errors import Forbidden, WirehubError


class Peer:
    """A connected client: send it frames through the node, read what it got."""

    def __init__(self, node: Node, client_id: str) -> None:
        self.node = node
        self.transport = MemoryTransport()
        self.conn = Connection(client_id, self.transport)
        self._read = 0

    async def settle(self) -> None:
        # The writer task starts on the loop's next turn; until then frames queue.
        for _ in range(100):
            if not self.conn.queued:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{self.conn.id}: queue never drained")

    async def new_frames(self) -> list[dict[str, Any]]:
        """Frames received since the last call, decoded."""
        await self.settle()
        frames = self.transport.sent[self._read :]
        self._read = len(self.transport.sent)
        return [orjson.loads(f) for f in frames]

    async def send(self, payload: str | bytes) -> list[dict[str, Any]]:
        await self.node.handle(self.conn, payload)
        return await self.new_frames()

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """One frame with a ``ref``; returns the one frame that answers it."""
        fields.setdefault("ref", f"r-{kind}")
        got = await self.send(encode({"type": kind, **fields}))
        answers = [f for f in got if f.get("ref") == fields["ref"]]
        assert len(answers) == 1, got
        return answers[0]


@pytest.fixture
def node() -> Node:
    return Node(node_id="n1")


@pytest.fixture
async def connect(node: Node):
    """``await connect("alice")``: a peer connected to ``node`` (or to ``on=``), closed after."""
    peers: list[Peer] = []

    async def factory(client_id: str, on: Node | None = None) -> Peer:
        peer = Peer(node if on is None else on, client_id)
        peer.node.connect(peer.conn)
        await peer.settle()
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        peer.node.disconnect(peer.conn)
    await asyncio.wait_for(asyncio.gather(*(p.conn.wait_closed() for p in peers)), 5)


# -- join / leave / presence ---------------------------------------------------------


async def test_join_replies_joined_and_tells_the_members(node, connect):
    alice, bob = await connect("alice"), await connect("bob")
    assert await alice.request("join", room="lobby") == {
        "type": "joined",
        "room": "lobby",
        "offset": 0,
        "member_count": 1,
        "members": ["alice"],
        "ref": "r-join",
    }
    joined = await bob.request("join", room="lobby")
    assert joined["members"] == ["alice", "bob"] and joined["member_count"] == 2
    assert await alice.new_frames() == [
        {"type": "presence", "room": "lobby", "event": "join", "client_id": "bob", "kind": "ws"}
    ]
    # Joining twice is harmless: same reply, no second presence event.
    assert (await bob.request("join", room="lobby"))["member_count"] == 2
    assert await alice.new_frames() == []


async def test_join_with_since_replays_what_was_missed_after_joined(node, connect):
    alice = await connect("alice")
    for i in range(1, 4):
        node.publish("news", "$hub", i)
    got = await alice.send(encode({"type": "join", "room": "news", "since": 1, "ref": 7}))
    assert got[0]["type"] == "joined" and got[0]["ref"] == 7
    assert got[0]["recovered"] is True and got[0]["first_offset"] == 1 and got[0]["offset"] == 3
    assert [(f["type"], f["offset"], f["data"]) for f in got[1:]] == [
        ("message", 2, 2),
        ("message", 3, 3),
    ]


async def test_join_with_since_beyond_what_the_room_has_is_not_recovered(node, connect):
    alice = await connect("alice")
    node.publish("news", "$hub", "only one")
    joined = (await alice.send(encode({"type": "join", "room": "news", "since": 50})))[0]
    assert joined["recovered"] is False and joined["offset"] == 1


async def test_leave_replies_left_and_tells_the_others(connect):
    alice, bob = await connect("alice"), await connect("bob")
    await alice.request("join", room="r")
    await bob.request("join", room="r")
    await alice.new_frames()
    assert await bob.request("leave", room="r") == {"type": "left", "room": "r", "ref": "r-leave"}
    assert await alice.new_frames() == [
        {"type": "presence", "room": "r", "event": "leave", "client_id": "bob", "kind": "ws"}
    ]
    again = await bob.request("leave", room="r")
    assert again["type"] == "error" and again["code"] == "not_found", again


async def test_presence_lists_the_members_and_an_unknown_room_is_not_found(connect):
    alice, bob = await connect("alice"), await connect("bob")
    await alice.request("join", room="r")
    await bob.request("join", room="r")
    assert await alice.request("presence", room="r") == {
        "type": "presence",
        "room": "r",
        "members": ["alice", "bob"],
        "member_count": 2,
        "ref": "r-presence",
    }
    missing = await alice.request("presence", room="nowhere")
    assert missing["code"] == "not_found"


async def test_presence_lists_a_bounded_number_of_members_but_counts_them_all(connect):
    node = Node(policies=[RoomPolicy(pattern="big", presence_events=False, max_members=2000)])
    members = [Connection(f"m{i}", MemoryTransport()) for i in range(MAX_MEMBERS_LISTED + 5)]
    for conn in members:
        node.rooms.join(conn, "big")
    asker = await connect("asker", on=node)
    reply = await asker.request("presence", room="big")
    assert reply["member_count"] == MAX_MEMBERS_LISTED + 5
    assert len(reply["members"]) == MAX_MEMBERS_LISTED


async def test_disconnect_leaves_every_room_and_the_others_see_it(node, connect):
    alice, bob = await connect("alice"), await connect("bob")
    for room in ("a", "b"):
        await alice.request("join", room=room)
        await bob.request("join", room=room)
    await alice.new_frames()
    node.disconnect(bob.conn, CloseCode.KICKED, "bye")
    await bob.conn.wait_closed()
    assert bob.transport.closed == (CloseCode.KICKED, "bye")
    assert "bob" not in node.clients
    assert sorted(f["room"] for f in await alice.new_frames() if f["event"] == "leave") == [
        "a",
        "b",
    ]


async def test_a_second_connection_with_the_same_id_replaces_the_first(node, connect):
    first = await connect("alice")
    await first.request("join", room="r")
    second = await connect("alice")
    await first.conn.wait_closed()
    assert first.transport.closed is not None and first.transport.closed[0] == 4409
    assert node.clients["alice"] is second.conn and node.rooms.get("r").members == {}


# -- publish / direct / ping -----------------------------------------------------------


async def test_publish_acks_the_sender_and_delivers_to_the_other_members(connect):
    alice, bob = await connect("alice"), await connect("bob")
    await alice.request("join", room="r")
    await bob.request("join", room="r")
    await alice.new_frames()
    ack = await alice.request("publish", room="r", data={"n": 1})
    assert ack == {"type": "ack", "room": "r", "offset": 1, "ref": "r-publish"}
    (message,) = await bob.new_frames()
    assert message["type"] == "message" and message["from"] == "alice"
    assert (message["room"], message["offset"], message["data"]) == ("r", 1, {"n": 1})
    assert isinstance(message["ts"], float)
    # The sender gets no copy of its own message, unless it asks for one.
    assert await alice.new_frames() == []
    got = await alice.send(encode({"type": "publish", "room": "r", "data": 2, "echo": True}))
    assert [f["type"] for f in got] == ["message", "ack"] and got[0]["offset"] == 2


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ({"room": "r"}, "bad_request", "missing field 'data'"),
        ({"room": "elsewhere", "data": 1}, "forbidden", "join room 'elsewhere' before"),
        ({"room": "$hub.stats", "data": 1}, "forbidden", "system room"),
        ({"room": "r", "data": 1, "echo": "yes"}, "bad_request", "field 'echo' must be true"),
        ({"room": "has space", "data": 1}, "bad_request", "not a valid room name"),
        ({"data": 1}, "bad_request", "missing field 'room'"),
    ],
)
async def test_a_refused_publish_says_why_and_delivers_nothing(connect, frame, code, words):
    alice, bob = await connect("alice"), await connect("bob")
    await alice.request("join", room="r")
    await bob.request("join", room="r")
    await bob.new_frames()
    error = await alice.request("publish", **frame)
    assert error["type"] == "error" and error["code"] == code, error
    assert words in error["message"], error
    assert await bob.new_frames() == []


async def test_direct_reaches_one_client_and_an_absent_one_is_not_found(connect):
    alice, bob = await connect("alice"), await connect("bob")
    assert await alice.request("direct", to="bob", data="psst") == {
        "type": "ack",
        "to": "bob",
        "ref": "r-direct",
    }
    assert await bob.new_frames() == [{"type": "direct", "from": "alice", "data": "psst"}]
    missing = await alice.request("direct", to="carol", data=1)
    assert missing["code"] == "not_found" and missing["to"] == "carol"
    no_data = await alice.request("direct", to="bob")
    assert no_data["code"] == "bad_request"


async def test_ping_gets_pong_and_any_frame_answers_the_heartbeat(connect):
    alice = await connect("alice")
    alice.conn.ping_sent = alice.conn.last_seen = time.monotonic() - 100
    pong = await alice.request("ping")
    assert pong["type"] == "pong" and abs(pong["ts"] - time.time()) < 60
    assert alice.conn.ping_sent is None and time.monotonic() - alice.conn.last_seen < 60
    # A pong (the answer to the hub's ping) is taken silently.
    alice.conn.ping_sent = time.monotonic()
    assert await alice.send('{"type":"pong"}') == []
    assert alice.conn.ping_sent is None


# -- bad frames and limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "words", "ref"),
    [
        ("{not json", "bad_request", "invalid JSON", None),
        ("[1, 2]", "bad_request", "must be a JSON object", None),
        ('{"room": "r"}', "bad_request", "missing field 'type'", None),
        ('{"type": ""}', "bad_request", "field 'type' must be a non-empty string", None),
        ('{"type": "ping", "ref": true}', "bad_request", "field 'ref' must be a string", None),
        ('{"type": "teleport", "ref": 3}', "unknown_type", "unknown frame type 'teleport'", 3),
        ('{"type": "join", "ref": "j"}', "bad_request", "missing field 'room'", "j"),
        ('{"type": "join", "room": "r", "since": -1}', "bad_request", "'since' must be", None),
    ],
)
async def test_a_bad_frame_gets_one_error_and_the_connection_goes_on(
    node, connect, payload, code, words, ref
):
    alice = await connect("alice")
    (error,) = await alice.send(payload)
    assert error["type"] == "error" and error["code"] == code, error
    assert words in error["message"], error
    assert error.get("ref") == ref
    assert node.errors[code] == 1
    assert alice.conn.open and (await alice.request("ping"))["type"] == "pong"


async def test_a_frame_over_max_frame_is_too_large(connect):
    alice = await connect("alice", on=Node(max_frame=100))
    (error,) = await alice.send(encode({"type": "ping", "pad": "x" * 200}))
    assert error["code"] == "too_large" and error["limit"] == 100


async def test_a_connection_may_join_only_so_many_rooms(connect):
    alice = await connect("alice", on=Node(max_rooms_per_connection=2))
    await alice.request("join", room="a")
    await alice.request("join", room="b")
    refused = await alice.request("join", room="c")
    assert refused["code"] == "limit_exceeded" and refused["limit"] == 2
    assert (await alice.request("join", room="a"))["type"] == "joined"  # already in: fine


async def test_a_full_room_refuses_a_new_member(connect):
    node = Node(policies=[RoomPolicy(pattern="small", max_members=1)])
    alice, bob = await connect("alice", on=node), await connect("bob", on=node)
    await alice.request("join", room="small")
    refused = await bob.request("join", room="small")
    assert refused["code"] == "limit_exceeded" and "is full" in refused["message"]


async def test_a_full_table_of_busy_rooms_refuses_a_new_room(connect):
    alice = await connect("alice", on=Node(max_rooms=2))
    await alice.request("join", room="a")
    await alice.request("join", room="b")
    refused = await alice.request("join", room="c")
    assert refused["code"] == "limit_exceeded" and refused["limit"] == 2


# -- custom handlers -----------------------------------------------------------------------


async def test_a_custom_handler_replies_with_the_ref_and_its_errors_carry_codes(node, connect):
    def echo(conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        return {"type": "echoed", "by": conn.id, "text": frame.get("text")}

    async def guarded(conn: Connection, frame: dict[str, Any]) -> None:
        raise Forbidden("not for you", room="x")

    def broken(conn: Connection, frame: dict[str, Any]) -> None:
        raise RuntimeError("a bug in the handler")

    node.on("echo", echo)
    node.on("guarded", guarded)
    node.on("broken", broken)
    alice = await connect("alice")
    assert await alice.request("echo", text="hi") == {
        "type": "echoed",
        "by": "alice",
        "text": "hi",
        "ref": "r-echo",
    }
    forbidden = await alice.request("guarded")
    assert (forbidden["code"], forbidden["message"], forbidden["room"]) == (
        "forbidden",
        "not for you",
        "x",
    )
    internal = await alice.request("broken")
    assert internal["code"] == WirehubError.code == "internal"
    assert "a bug" not in internal["message"]  # no internals leak to the peer
    with pytest.raises(ValueError, match="built-in"):
        node.on("publish", echo)
