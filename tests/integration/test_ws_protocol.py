"""The WebSocket protocol of docs/protocol.md, over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from support import open_client
from wirehub.errors import Forbidden


async def test_welcome_carries_the_given_or_a_generated_id(hub, ws_client):
    named = await ws_client(hub.ws, "alice")
    assert named.welcome["client_id"] == "alice"
    anonymous = await ws_client(hub.ws)
    assert len(anonymous.client_id) == 16 and anonymous.client_id != "alice"


async def test_invalid_client_id_is_closed_with_4400(hub):
    client = await _raw_connect(hub.ws + "?client_id=bad%20id")
    code, reason = await client.closed()
    assert code == 4400 and "invalid client_id" in reason


async def test_second_connection_with_same_id_replaces_the_first(hub, ws_client):
    watcher = await ws_client(hub.ws, "watcher")
    await watcher.request("join", room="r")
    first = await ws_client(hub.ws, "dup")
    await first.request("join", room="r")
    await watcher.expect("presence", event="join", client_id="dup")
    second = await ws_client(hub.ws, "dup")
    code, reason = await first.closed()
    assert code == 4409 and "replaced" in reason
    await watcher.expect("presence", event="leave", client_id="dup")
    # The new connection works and starts with no rooms.
    assert (await second.request("ping"))["type"] == "pong"
    presence = await watcher.request("presence", room="r")
    assert presence["members"] == ["watcher"]


async def test_join_leave_presence_and_disconnect_events(hub, ws_client):
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    joined = await alice.request("join", room="chat")
    assert joined == {
        "type": "joined",
        "room": "chat",
        "offset": 0,
        "members": ["alice"],
        "member_count": 1,
        "ref": joined["ref"],
    }
    await bob.request("join", room="chat")
    await alice.expect("presence", room="chat", event="join", client_id="bob")
    left = await bob.request("leave", room="chat")
    assert left["type"] == "left" and left["room"] == "chat"
    await alice.expect("presence", room="chat", event="leave", client_id="bob")
    await bob.request("join", room="chat")
    await alice.expect("presence", event="join", client_id="bob")
    await bob.close()  # a disconnect is a leave
    await alice.expect("presence", room="chat", event="leave", client_id="bob")
    query = await alice.request("presence", room="chat")
    assert query["members"] == ["alice"] and query["member_count"] == 1


async def test_publish_is_acked_with_offset_and_not_echoed_unless_asked(hub, ws_client):
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    await alice.request("join", room="r")
    await bob.request("join", room="r")
    await alice.expect("presence")
    ack = await alice.request("publish", room="r", data=[1, 2])
    assert ack["type"] == "ack" and ack["offset"] == 1 and ack["room"] == "r"
    got = await bob.expect("message", room="r", offset=1, data=[1, 2])
    assert got["from"] == "alice" and isinstance(got["ts"], float)
    ack2 = await alice.request("publish", room="r", data="again", echo=True)
    assert ack2["offset"] == 2
    echoed = await alice.expect("message", offset=2)
    assert echoed["from"] == "alice"
    await bob.expect("message", offset=2)
    await alice.no_frame()


async def test_direct_reaches_only_its_target(hub, ws_client):
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    carol = await ws_client(hub.ws, "carol")
    ack = await alice.request("direct", to="bob", data={"secret": 1})
    assert ack["type"] == "ack" and ack["to"] == "bob"
    assert await bob.expect("direct") == {"type": "direct", "from": "alice", "data": {"secret": 1}}
    await carol.no_frame()
    error = await alice.request("direct", to="nobody", data=1)
    assert error["code"] == "not_found" and error["message"] == "client 'nobody' is not connected"


async def test_ping_pong_echoes_ref(hub, ws_client):
    client = await ws_client(hub.ws)
    await client.send(type="ping", ref=42)
    pong = await client.expect("pong", ref=42)
    assert isinstance(pong["ts"], float)


async def test_publish_requires_join_and_system_rooms_are_read_only(hub, ws_client):
    client = await ws_client(hub.ws)
    error = await client.request("publish", room="elsewhere", data=1)
    assert error["code"] == "forbidden"
    assert error["message"] == "join room 'elsewhere' before publishing to it"
    await client.request("join", room="$hub.stats")
    error = await client.request("publish", room="$hub.stats", data=1)
    assert error["code"] == "forbidden" and "system room" in error["message"]


async def test_publish_without_join_can_be_allowed(hub_server, ws_client):
    running = await hub_server(limits={"publish_requires_join": False})
    reader = await ws_client(running.ws, "reader")
    await reader.request("join", room="r")
    writer = await ws_client(running.ws, "writer")
    assert (await writer.request("publish", room="r", data=1))["offset"] == 1
    await reader.expect("message", data=1, **{"from": "writer"})


async def test_custom_handler_replies_publishes_and_raises_typed_errors(hub, ws_client):
    @hub.hub.on("chat.typing")
    async def typing(conn, frame):
        if not frame.get("room"):
            raise Forbidden("say where you type")
        await hub.hub.publish(frame["room"], {"typing": conn.id}, sender=conn.id, exclude=conn.id)
        return {"type": "chat.typing.ok"}

    @hub.hub.on("sum")
    def add(conn, frame):
        return {"type": "sum.result", "value": sum(frame["values"])}

    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    await bob.request("join", room="r")
    assert (await alice.request("chat.typing", room="r"))["type"] == "chat.typing.ok"
    assert (await bob.expect("message"))["data"] == {"typing": "alice"}
    error = await alice.request("chat.typing")
    assert error == {
        "type": "error",
        "ref": error["ref"],
        "code": "forbidden",
        "message": "say where you type",
    }
    assert (await alice.request("sum", values=[1, 2, 3]))["value"] == 6
    # A handler bug is an error reply, not a dead connection.
    crash = await alice.request("sum", values="nope")
    assert crash["code"] == "internal"
    assert (await alice.request("ping"))["type"] == "pong"


async def test_builtin_types_cannot_be_overridden(hub):
    with pytest.raises(ValueError, match="built-in"):
        hub.hub.on("publish")(lambda conn, frame: None)


async def test_server_side_api_publish_send_broadcast(hub, ws_client):
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    await alice.request("join", room="news")
    offset = await hub.hub.publish("news", {"headline": "x"})
    assert offset == 1
    msg = await alice.expect("message", room="news", offset=1)
    assert msg["from"] == "$hub"
    await hub.hub.send("bob", "just you")
    assert await bob.expect("direct") == {"type": "direct", "from": "$hub", "data": "just you"}
    assert await hub.hub.broadcast({"all": True}) == 2
    for client in (alice, bob):
        assert (await client.expect("broadcast"))["data"] == {"all": True}


async def test_threadsafe_publish_from_another_thread(hub, ws_client):
    client = await ws_client(hub.ws)
    await client.request("join", room="notices")

    def worker() -> list[int]:
        return [hub.hub.publish_threadsafe("notices", {"n": i}).result(timeout=5) for i in range(3)]

    offsets = await asyncio.to_thread(worker)
    assert offsets == [1, 2, 3]
    assert [(await client.expect("message"))["data"]["n"] for _ in range(3)] == [0, 1, 2]
    sent = await asyncio.to_thread(
        lambda: hub.hub.send_threadsafe(client.client_id, "hi").result(5)
    )
    assert sent is None
    assert (await client.expect("direct"))["data"] == "hi"


async def _raw_connect(url: str):
    from websockets.asyncio.client import connect

    from support import WSClient

    return WSClient(await connect(url))


async def test_heartbeat_closes_a_silent_client_and_it_leaves_presence(hub_server, ws_client):
    running = await hub_server(heartbeat={"interval": 0.2, "timeout": 0.3})
    watcher = await ws_client(running.ws, "watcher")
    silent = await ws_client(running.ws, "silent")
    await silent.request("join", room="r")
    await watcher.request("join", room="r")
    # The watcher answers pings; the silent one never does.
    deadline = asyncio.get_running_loop().time() + 5
    leave = None
    while leave is None and asyncio.get_running_loop().time() < deadline:
        frame = await watcher.recv()
        if frame["type"] == "ping":
            await watcher.send(type="pong")
        elif frame["type"] == "presence" and frame["event"] == "leave":
            leave = frame
    assert leave == {
        "type": "presence",
        "room": "r",
        "event": "leave",
        "client_id": "silent",
        "kind": "ws",
    }
    await silent.wait_for("ping")
    code, reason = await silent.closed()
    assert code == 4002 and reason == "heartbeat timeout"
    # The watcher, which answered, is still connected.
    assert (await watcher.request("ping"))["type"] == "pong"


async def test_binary_frames_answer_the_heartbeat_too(hub_server, ws_client):
    """A client busy sending upload chunks is not silent: any frame counts."""
    running = await hub_server(heartbeat={"interval": 0.1, "timeout": 0.1})
    busy = await ws_client(running.ws, "busy")
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.0  # five heartbeat periods
    while loop.time() < until:
        await busy.send_raw(b"chunk")
        frame = await busy.recv()  # the no-upload error, or a ping it does not answer
        assert frame["type"] in ("error", "ping")
        await asyncio.sleep(0.03)  # a chunk every 30 ms: well under the abuse limit
    assert (await busy.request("ping"))["type"] == "pong"


async def test_a_stopped_hub_refuses_connections_with_503(hub):
    await hub.hub.stop()
    with pytest.raises(InvalidStatus) as info:
        await open_client(hub.ws)
    assert info.value.response.status_code == 503
    assert b"not accepting connections" in info.value.response.body


@pytest.mark.parametrize("enabled", [False, True])
async def test_permessage_deflate_is_off_unless_configured(hub_server, ws_client, enabled):
    running = await hub_server(server={"ws_per_message_deflate": enabled})
    client = await ws_client(running.ws, compression="deflate")
    negotiated = [type(ext).__name__ for ext in client.ws.protocol.extensions]
    assert (negotiated == ["PerMessageDeflate"]) is enabled
    await client.request("join", room="z")
    assert (await client.request("publish", room="z", data="x" * 1000))["offset"] == 1
