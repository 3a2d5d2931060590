"""Idempotent publish against real servers (issue 16): one delivery per key and room.

WebSocket and HTTP, on the memory broker and on the Redis broker (a real
redis-server), and across two nodes sharing one Redis: the second publish with a
key is not delivered and answers the first offset, also when both race. "Not
delivered" is shown without waiting for silence: a marker published after the
repeats arrives next, so anything the repeats had delivered would come before it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from support import FACTOR, TIMEOUT, RunningHub, WSClient
from wirehub.client import HubClient

HubFactory = Callable[..., Awaitable[RunningHub]]


@pytest.fixture(params=["memory", "redis"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The hub settings of one broker (Redis with a prefix of its own)."""
    if request.param == "memory":
        return {}
    url = request.getfixturevalue("redis_url")
    return {"redis": {"url": url, "prefix": f"i{uuid.uuid4().hex[:6]}"}}


async def until_marker(client: WSClient, room: str, marker: str) -> list[Any]:
    """The data of the messages ``client`` gets up to ``marker`` in ``room`` (not
    included); those of other rooms as ``(room, data)``."""
    seen: list[Any] = []
    while True:
        frame = await client.wait_for("message")
        if frame["room"] == room and frame["data"] == marker:
            return seen
        seen.append(frame["data"] if frame["room"] == room else (frame["room"], frame["data"]))


async def test_a_repeated_key_over_websocket_is_delivered_once(
    hub_server, broker_settings, ws_client
):
    running = await hub_server(**broker_settings)
    alice = await ws_client(running.ws, "alice")
    bob = await ws_client(running.ws, "bob")
    for room in ("r", "s"):
        await alice.request("join", room=room)
        await bob.request("join", room=room)
    first = await alice.request("publish", room="r", data="a", idempotency_key="K")
    again = await alice.request("publish", room="r", data="a", idempotency_key="K")
    assert first["type"] == again["type"] == "ack"
    assert first["offset"] == again["offset"] == 1
    other = await alice.request("publish", room="r", data="b", idempotency_key="K2")
    plain = [await alice.request("publish", room="r", data="c") for _ in range(2)]
    assert [other["offset"], *(p["offset"] for p in plain)] == [2, 3, 4]
    elsewhere = await alice.request("publish", room="s", data="d", idempotency_key="K")
    assert elsewhere["offset"] == 1
    await alice.request("publish", room="r", data="end")
    assert await until_marker(bob, "r", "end") == ["a", "b", "c", "c", ("s", "d")]
    # A bad key is refused precisely, and the connection goes on.
    bad = await alice.request("publish", room="r", data="x", idempotency_key="k" * 129)
    assert bad["type"] == "error" and bad["code"] == "bad_request"
    assert bad["message"] == "field 'idempotency_key' is longer than 128 characters"
    wrong = await alice.request("publish", room="r", data="x", idempotency_key=5)
    assert wrong["code"] == "bad_request"
    assert (await alice.request("ping"))["type"] == "pong"


async def test_a_repeated_key_over_http_is_delivered_once(hub_server, broker_settings, ws_client):
    running = await hub_server(**broker_settings)
    bob = await ws_client(running.ws, "bob")
    await bob.request("join", room="orders")
    url = f"{running.http}/api/rooms/orders/publish"
    async with httpx.AsyncClient() as http:
        body = {"data": {"sku": "A1"}, "idempotency_key": "order-17"}
        answers = [(await http.post(url, json=body)).json() for _ in range(2)]
        assert answers == [{"room": "orders", "offset": 1}] * 2
        header = {"Idempotency-Key": "order-18"}
        offsets = [
            (await http.post(url, json={"data": "B2"}, headers=header)).json()["offset"]
            for _ in range(2)
        ]
        assert offsets == [2, 2]
        # Header and body naming the same key agree; naming two keys is an error.
        same = await http.post(url, json={"data": "B2", "idempotency_key": "order-18"})
        assert same.json()["offset"] == 2
        differ = await http.post(
            url, json={"data": "x", "idempotency_key": "a"}, headers={"Idempotency-Key": "b"}
        )
        assert differ.status_code == 400 and differ.json()["detail"]["code"] == "bad_request"
        too_long = await http.post(url, json={"data": "x", "idempotency_key": "k" * 129})
        assert too_long.status_code == 422
        assert too_long.json()["detail"]["code"] == "bad_request"
        control = await http.post(url, json={"data": "x", "idempotency_key": "a\nb"})
        assert control.status_code == 400
        assert "control characters" in control.json()["detail"]["message"]
        await http.post(url, json={"data": "end"})
        metrics = (await http.get(f"{running.http}/metrics")).text
    assert await until_marker(bob, "orders", "end") == [{"sku": "A1"}, "B2"]
    # The three answered from their key are counted, apart from what was published.
    assert "wirehub_publish_duplicates_total 3.0" in metrics


async def test_hub_publish_with_a_key_answers_the_first_offset(hub_server, broker_settings):
    running = await hub_server(**broker_settings)
    hub = running.hub
    first = await hub.publish("jobs", {"n": 1}, idempotency_key="evt-1")
    assert await hub.publish("jobs", {"n": 1}, idempotency_key="evt-1") == first
    assert await hub.publish("jobs", {"n": 2}, idempotency_key="evt-2") == first + 1
    _, replay = await hub.broker.history("jobs", 0)
    assert len(replay.frames) == 2


async def test_a_key_delivers_again_once_its_window_has_passed(
    hub_server, broker_settings, ws_client
):
    running = await hub_server(limits={"idempotency_window": 0.2}, **broker_settings)
    alice = await ws_client(running.ws, "alice")
    bob = await ws_client(running.ws, "bob")
    await alice.request("join", room="w")
    await bob.request("join", room="w")
    assert (await alice.request("publish", room="w", data=1, idempotency_key="K"))["offset"] == 1
    # Wait on the condition itself: repeats are answered with offset 1 (and not
    # delivered) until the window ends; then the key makes a new message.
    deadline = asyncio.get_running_loop().time() + TIMEOUT * FACTOR
    while True:
        ack = await alice.request("publish", room="w", data=2, idempotency_key="K")
        if ack["offset"] != 1:
            break
        assert asyncio.get_running_loop().time() < deadline, "the key never expired"
        await asyncio.sleep(0.05)
    assert ack["offset"] == 2
    await alice.request("publish", room="w", data="end")
    assert await until_marker(bob, "w", "end") == [1, 2]


async def test_redis_keeps_the_key_under_the_prefix_for_the_window(hub_server, redis_url):
    prefix = f"i{uuid.uuid4().hex[:6]}"
    running = await hub_server(
        redis={"url": redis_url, "prefix": prefix}, limits={"idempotency_window": 30}
    )
    offset = await running.hub.publish("orders", "x", idempotency_key="order-17")
    r = aioredis.Redis.from_url(redis_url)
    try:
        name = f"{prefix}:idem:orders order-17"
        assert int(await r.get(name)) == offset
        assert 0 < await r.pttl(name) <= 30_000
    finally:
        await r.aclose()


async def test_two_nodes_deliver_a_repeated_or_racing_key_once(hub_server, redis_url, ws_client):
    shared = {"redis": {"url": redis_url, "prefix": f"i{uuid.uuid4().hex[:6]}"}}
    node_a = await hub_server(**shared)
    node_b = await hub_server(**shared)
    pub_a = await ws_client(node_a.ws, "pub-a")
    pub_b = await ws_client(node_b.ws, "pub-b")
    sub_a = await ws_client(node_a.ws, "sub-a")
    sub_b = await ws_client(node_b.ws, "sub-b")
    for client in (pub_a, pub_b, sub_a, sub_b):
        await client.request("join", room="c")
    # Sequential: A first, then B with the same key.
    first = await pub_a.request("publish", room="c", data="once", idempotency_key="K")
    second = await pub_b.request("publish", room="c", data="once", idempotency_key="K")
    assert first["offset"] == second["offset"] == 1
    async with httpx.AsyncClient() as http:
        body = {"data": "once", "idempotency_key": "K"}
        answer = await http.post(f"{node_b.http}/api/rooms/c/publish", json=body)
        assert answer.json()["offset"] == 1
    # Racing: both nodes at once with a new key make one message, one offset;
    # over WebSocket and through hub.publish on each node.
    for i in range(3):
        raced = await asyncio.gather(
            pub_a.request("publish", room="c", data=f"ws{i}", idempotency_key=f"R{i}"),
            pub_b.request("publish", room="c", data=f"ws{i}", idempotency_key=f"R{i}"),
        )
        assert raced[0]["offset"] == raced[1]["offset"] == 2 + 2 * i
        offsets = await asyncio.gather(
            node_a.hub.publish("c", f"hub{i}", idempotency_key=f"H{i}"),
            node_b.hub.publish("c", f"hub{i}", idempotency_key=f"H{i}"),
        )
        assert offsets == [3 + 2 * i] * 2
    await pub_a.request("publish", room="c", data="end")
    expected = ["once", "ws0", "hub0", "ws1", "hub1", "ws2", "hub2"]
    for sub in (sub_a, sub_b):
        assert await until_marker(sub, "c", "end") == expected


async def test_the_python_client_retries_with_its_key(hub, ws_client):
    reader = await ws_client(hub.ws, "reader")
    await reader.request("join", room="py")
    client = await HubClient(hub.ws, client_id="writer").connect()
    try:
        await client.join("py")
        first = await client.publish("py", "hello", idempotency_key="msg-1")
        assert await client.publish("py", "hello", idempotency_key="msg-1") == first
        await client.publish("py", "end")
    finally:
        await client.close()
    assert await until_marker(reader, "py", "end") == ["hello"]
