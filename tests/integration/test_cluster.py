"""Several real ``wirehub serve`` processes behind one real redis-server act as one hub.

Two nodes (A, B) run for the whole module on the session's redis-server under
their own key prefix; each test uses its own rooms and client ids.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from cluster_support import start_node, start_nodes, stop_node
from support import FACTOR, HubProcess


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(redis_server: str, prefix: str) -> Iterator[list[HubProcess]]:
    nodes = start_nodes(redis_server, prefix, 2)
    try:
        yield nodes
    finally:
        for node in nodes:
            stop_node(node)


def room_name() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


async def test_chat_presence_and_direct_across_nodes(cluster, ws_client):
    a, b = cluster
    room = room_name()
    alice = await ws_client(a.ws, "alice-chat")
    bob = await ws_client(b.ws, "bob-chat")
    assert alice.welcome["node"] != bob.welcome["node"]

    await alice.request("join", room=room)
    joined = await bob.request("join", room=room)
    assert sorted(joined["members"]) == ["alice-chat", "bob-chat"]
    # Alice, on the other node, sees Bob arrive.
    await alice.wait_for("presence", event="join", client_id="bob-chat")

    ack = await alice.request("publish", room=room, data="hi bob")
    assert ack["offset"] == 1
    message = await bob.expect("message", room=room, data="hi bob", offset=1)
    assert message["from"] == "alice-chat"
    ack = await bob.request("publish", room=room, data="hi alice")
    assert ack["offset"] == 2
    await alice.expect("message", data="hi alice", offset=2)
    # No echo to the sender, exactly once to the other.
    await alice.no_frame()
    await bob.no_frame()

    presence = await bob.request("presence", room=room)
    assert sorted(presence["members"]) == ["alice-chat", "bob-chat"]

    reply = await alice.request("direct", to="bob-chat", data={"secret": 1})
    assert reply["type"] == "ack"
    direct = await bob.expect("direct", data={"secret": 1})
    assert direct["from"] == "alice-chat"
    missing = await alice.request("direct", to="nobody-here", data=1)
    assert missing["type"] == "error" and missing["code"] == "not_found"

    await bob.request("leave", room=room)
    await alice.wait_for("presence", event="leave", client_id="bob-chat")


async def test_offsets_are_shared_and_every_member_sees_them_in_order(cluster, ws_client):
    a, b = cluster
    room = room_name()
    pub_a = await ws_client(a.ws, "pub-a")
    pub_b = await ws_client(b.ws, "pub-b")
    sub_a = await ws_client(a.ws, "sub-a")
    sub_b = await ws_client(b.ws, "sub-b")
    for client in (pub_a, pub_b, sub_a, sub_b):
        await client.request("join", room=room)
    n = 60

    async def blast(client, tag):
        for i in range(n):
            await client.send(type="publish", room=room, data=f"{tag}{i}")

    await asyncio.gather(blast(pub_a, "a"), blast(pub_b, "b"))

    async def collect(client):
        seen = []
        while len(seen) < 2 * n:
            frame = await client.recv()
            if frame["type"] == "message":
                seen.append((frame["offset"], frame["data"]))
        return seen

    got_a, got_b = await asyncio.gather(collect(sub_a), collect(sub_b))
    assert [o for o, _ in got_a] == list(range(1, 2 * n + 1))
    assert got_a == got_b  # same offsets, same order, once each, on both nodes
    # Each publisher's messages keep its own order.
    assert [d for _, d in got_a if d.startswith("a")] == [f"a{i}" for i in range(n)]
    await sub_a.no_frame()
    await sub_b.no_frame()


async def test_history_recovers_after_switching_nodes(cluster, ws_client):
    a, b = cluster
    room = room_name()
    writer = await ws_client(a.ws, "writer-h")
    await writer.request("join", room=room)
    carol = await ws_client(a.ws, "carol-h")
    await carol.request("join", room=room)
    for i in range(3):
        await writer.request("publish", room=room, data=i)
    last = [(await carol.expect("message"))["offset"] for _ in range(3)][-1]
    assert last == 3
    await carol.close()
    for i in range(3, 7):
        await writer.request("publish", room=room, data=i)

    # Carol comes back through the other node and asks for what she missed.
    carol = await ws_client(b.ws, "carol-h")
    joined = await carol.request("join", room=room, since=last)
    assert joined["recovered"] is True and joined["offset"] == 7
    replay = [await carol.expect("message") for _ in range(4)]
    assert [(m["offset"], m["data"]) for m in replay] == [(4, 3), (5, 4), (6, 5), (7, 6)]
    # Live messages follow the replay.
    await writer.request("publish", room=room, data="live")
    assert (await carol.expect("message"))["offset"] == 8

    # A client that says it saw more than the hub ever had is told it is not whole.
    stranger = await ws_client(b.ws)
    joined = await stranger.request("join", room=room, since=100)
    assert joined["recovered"] is False


async def test_http_api_shows_and_reaches_every_node(cluster, ws_client):
    a, b = cluster
    room = room_name()
    alice = await ws_client(a.ws, "alice-http")
    bob = await ws_client(b.ws, "bob-http")
    await alice.request("join", room=room)
    await bob.request("join", room=room)
    node_a, node_b = alice.welcome["node"], bob.welcome["node"]
    async with httpx.AsyncClient(timeout=5 * FACTOR) as http:
        listed = (await http.get(f"{a.http}/api/clients")).json()
        where = {c["id"]: c["node"] for c in listed}
        assert where["alice-http"] == node_a and where["bob-http"] == node_b
        assert next(c for c in listed if c["id"] == "bob-http")["rooms"] == [room]
        detail = (await http.get(f"{b.http}/api/rooms/{room}")).json()
        assert detail["member_nodes"] == {"alice-http": node_a, "bob-http": node_b}
        assert detail["member_count"] == 2

        # hub.send through node A reaches Bob on node B.
        sent = await http.post(f"{a.http}/api/clients/bob-http/send", json={"data": "psst"})
        assert sent.status_code == 202
        await bob.expect("direct", data="psst")
        gone = await http.post(f"{a.http}/api/clients/ghost/send", json={"data": 1})
        assert gone.status_code == 404

        # A server-side publish on node B reaches both, with one shared offset.
        published = await http.post(f"{b.http}/api/rooms/{room}/publish", json={"data": "srv"})
        offset = published.json()["offset"]
        await alice.wait_for("message", data="srv", offset=offset)
        await bob.wait_for("message", data="srv", offset=offset)
        history = (await http.get(f"{a.http}/api/rooms/{room}/history")).json()
        assert [m["data"] for m in history["messages"]] == ["srv"]

        ready = (await http.get(f"{a.http}/readyz")).json()
        assert ready["checks"]["redis"] is True


async def test_a_node_subscribes_to_a_room_only_while_it_has_members(
    cluster, ws_client, redis_server, prefix
):
    a, _ = cluster
    room = room_name()
    channel = f"{prefix}:room:{room}"
    client = redis.Redis.from_url(redis_server)
    try:
        assert client.pubsub_numsub(channel) == [(channel.encode(), 0)]
        first = await ws_client(a.ws)
        second = await ws_client(a.ws)
        await first.request("join", room=room)
        await second.request("join", room=room)
        assert client.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await first.request("leave", room=room)
        assert client.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await second.request("leave", room=room)
        await second.request("ping")  # the unsubscribe is queued before this reply
        for _ in range(50):
            if client.pubsub_numsub(channel) == [(channel.encode(), 0)]:
                break
            await asyncio.sleep(0.02)
        assert client.pubsub_numsub(channel) == [(channel.encode(), 0)]
    finally:
        client.close()


async def test_a_killed_node_has_its_members_removed(cluster, redis_server, prefix, ws_client):
    a, _ = cluster
    room = room_name()
    doomed = start_node(redis_server, prefix)
    try:
        alice = await ws_client(a.ws, "alice-kill")
        await alice.request("join", room=room)
        dave = await ws_client(doomed.ws, "dave-kill")
        await dave.request("join", room=room)
        await alice.wait_for("presence", event="join", client_id="dave-kill")
        presence = await alice.request("presence", room=room)
        assert sorted(presence["members"]) == ["alice-kill", "dave-kill"]

        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait()
        # node_ttl is 1 s here: the survivors notice and send the leave.
        await alice.wait_for("presence", timeout=5, event="leave", client_id="dave-kill")
        presence = await alice.request("presence", room=room)
        assert presence["members"] == ["alice-kill"]
        async with httpx.AsyncClient(timeout=5 * FACTOR) as http:
            ids = [c["id"] for c in (await http.get(f"{a.http}/api/clients")).json()]
        assert "dave-kill" not in ids
        missing = await alice.request("direct", to="dave-kill", data=1)
        assert missing["code"] == "not_found"
    finally:
        stop_node(doomed)


async def test_same_client_id_on_another_node_replaces_the_first(cluster, ws_client):
    a, b = cluster
    first = await ws_client(a.ws, "twin")
    await first.request("ping")
    # The registration travels to Redis asynchronously: the second connection can only
    # replace a first one the cluster already knows (wait for it, seen from node B).
    async with httpx.AsyncClient(timeout=5 * FACTOR) as http:
        deadline = asyncio.get_running_loop().time() + 5 * FACTOR
        while True:
            seen = await http.get(f"{b.http}/api/clients/twin")
            if seen.status_code == 200 and seen.json()["node"] == first.welcome["node"]:
                break
            assert asyncio.get_running_loop().time() < deadline, seen.text
            await asyncio.sleep(0.02)
    await ws_client(b.ws, "twin")
    code, _ = await first.closed()
    assert code == 4409


async def test_a_node_stopped_gracefully_says_goodbye_at_once(
    cluster, redis_server, prefix, ws_client
):
    a, _ = cluster
    room = room_name()
    leaving = start_node(redis_server, prefix, WIREHUB_REDIS__NODE_TTL="30")
    try:
        alice = await ws_client(a.ws, "alice-bye")
        await alice.request("join", room=room)
        erin = await ws_client(leaving.ws, "erin-bye")
        await erin.request("join", room=room)
        await alice.wait_for("presence", event="join", client_id="erin-bye")
        leaving.proc.send_signal(signal.SIGTERM)
        # Long before node_ttl (30 s): the node removed its members on the way out.
        await alice.wait_for("presence", timeout=5, event="leave", client_id="erin-bye")
        assert leaving.proc.wait(10 * FACTOR) == 0
        presence = await alice.request("presence", room=room)
        assert presence["members"] == ["alice-bye"]
    finally:
        stop_node(leaving)
