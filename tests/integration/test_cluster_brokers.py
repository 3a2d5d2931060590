"""One suite, both brokers: the embedded (memory) and the Redis broker mean the same.

Each test runs against an in-process hub with the memory broker and with the
Redis broker (a real redis-server): what a client sees must not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest

from support import RunningHub


@pytest.fixture(params=["memory", "redis"])
async def any_hub(
    request: pytest.FixtureRequest, hub_server: Callable[..., Awaitable[RunningHub]]
) -> RunningHub:
    if request.param == "memory":
        return await hub_server()
    url = request.getfixturevalue("redis_url")
    return await hub_server(redis={"url": url, "prefix": f"b{uuid.uuid4().hex[:6]}"})


async def test_publish_ack_offsets_and_presence(any_hub, ws_client):
    alice = await ws_client(any_hub.ws, "alice")
    bob = await ws_client(any_hub.ws, "bob")
    joined = await alice.request("join", room="r")
    assert joined["offset"] == 0 and joined["members"] == ["alice"]
    joined = await bob.request("join", room="r")
    assert sorted(joined["members"]) == ["alice", "bob"]
    await alice.expect("presence", event="join", client_id="bob")
    assert (await alice.request("publish", room="r", data="x"))["offset"] == 1
    await bob.expect("message", data="x", offset=1, **{"from": "alice"})
    echoed = await alice.request("publish", room="r", data="y", echo=True)
    assert echoed["offset"] == 2
    await alice.wait_for("message", data="y", offset=2)
    presence = await bob.request("presence", room="r")
    assert sorted(presence["members"]) == ["alice", "bob"]
    unknown = await bob.request("presence", room="nowhere")
    assert unknown["code"] == "not_found"
    await bob.request("leave", room="r")
    await alice.wait_for("presence", event="leave", client_id="bob")


async def test_history_replay_and_recovery(any_hub, ws_client):
    writer = await ws_client(any_hub.ws)
    await writer.request("join", room="h")
    for i in range(5):
        await writer.request("publish", room="h", data=i)
    reader = await ws_client(any_hub.ws)
    joined = await reader.request("join", room="h", since=2)
    assert joined["recovered"] is True and joined["offset"] == 5
    assert [(await reader.expect("message"))["offset"] for _ in range(3)] == [3, 4, 5]
    other = await ws_client(any_hub.ws)
    joined = await other.request("join", room="h", since=9)
    assert joined["recovered"] is False
    async with httpx.AsyncClient() as http:
        page = (await http.get(f"{any_hub.http}/api/rooms/h/history?since=3")).json()
        assert page["offset"] == 5 and page["recovered"] is True
        assert [m["data"] for m in page["messages"]] == [3, 4]
        missing = await http.get(f"{any_hub.http}/api/rooms/never/history")
        assert missing.status_code == 404


async def test_trimmed_history_is_not_recovered(hub_server, ws_client, request):
    for settings in ({}, {"redis": {"url": request.getfixturevalue("redis_url")}}):
        running = await hub_server(history={"size": 3}, **settings)
        writer = await ws_client(running.ws)
        room = f"t{uuid.uuid4().hex[:6]}"
        await writer.request("join", room=room)
        for i in range(6):
            await writer.request("publish", room=room, data=i)
        reader = await ws_client(running.ws)
        joined = await reader.request("join", room=room, since=1)
        assert joined["recovered"] is False and joined["first_offset"] == 4
        assert [(await reader.expect("message"))["data"] for _ in range(3)] == [3, 4, 5]


async def test_direct_send_broadcast_and_client_list(any_hub, ws_client):
    alice = await ws_client(any_hub.ws, "alice")
    bob = await ws_client(any_hub.ws, "bob")
    assert (await alice.request("direct", to="bob", data=1))["type"] == "ack"
    await bob.expect("direct", data=1, **{"from": "alice"})
    assert (await alice.request("direct", to="zed", data=1))["code"] == "not_found"
    await any_hub.hub.send("alice", "from server")
    await alice.expect("direct", data="from server")
    assert await any_hub.hub.broadcast("all") == 2
    await alice.expect("broadcast", data="all")
    await bob.expect("broadcast", data="all")
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{any_hub.http}/api/clients")).json()
        assert sorted(c["id"] for c in listed) == ["alice", "bob"]
        assert {c["node"] for c in listed} == {any_hub.hub.node_id}
        ready = (await http.get(f"{any_hub.http}/readyz")).json()
        assert ready["ready"] is True
        assert ("redis" in ready["checks"]) is any_hub.hub.broker.distributed
