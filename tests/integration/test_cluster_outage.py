"""Redis goes away during traffic and comes back: nodes degrade, recover, and say what was lost.

This suite runs its own redis-server (stopping the session's one would break
the others) and restarts it on the same port, without persistence: Redis
comes back empty, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx

from cluster_support import start_nodes, stop_node
from redis_support import spawn_redis
from support import FACTOR


async def wait_ready(http: httpx.AsyncClient, url: str, ready: bool, timeout: float = 10) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout * FACTOR
    while True:
        reply = await http.get(f"{url}/readyz")
        body = reply.json()
        if (reply.status_code == 200) == ready:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"readyz stuck at {body}"
        await asyncio.sleep(0.05)


async def test_redis_restart_during_traffic(ws_client):
    server, url = spawn_redis()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    nodes = []
    try:
        nodes = start_nodes(url, f"o{uuid.uuid4().hex[:6]}", 2)
        a, b = nodes
        room = "outage"
        alice = await ws_client(a.ws, "alice-o")
        alice2 = await ws_client(a.ws, "alice2-o")
        bob = await ws_client(b.ws, "bob-o")
        for client in (alice, alice2, bob):
            await client.request("join", room=room)
        assert (await alice.request("publish", room=room, data="before"))["offset"] == 1
        await bob.wait_for("message", data="before", offset=1)
        await alice2.wait_for("message", data="before", offset=1)

        # Traffic keeps flowing from node B while Redis stops and starts again.
        stop = asyncio.Event()

        async def traffic() -> None:
            i = 0
            while not stop.is_set():
                await bob.send(type="publish", room=room, data=f"t{i}")
                i += 1
                await asyncio.sleep(0.02)

        pumping = asyncio.create_task(traffic())
        async with httpx.AsyncClient(timeout=5 * FACTOR) as http:
            server.terminate()
            server.wait(10)
            body = await wait_ready(http, a.http, ready=False)
            assert body["checks"]["redis"] is False
            await wait_ready(http, b.http, ready=False)

            # Local delivery goes on: alice2 (same node) gets it, without an offset.
            ack = await alice.request("publish", room=room, data="during")
            assert ack["offset"] == 0
            local = await alice2.wait_for("message", data="during")
            assert local["offset"] is None and local["local"] is True

            server, _ = spawn_redis(port)
            await wait_ready(http, a.http, ready=True)
            await wait_ready(http, b.http, ready=True)

            # Bob missed "during" (it never left node A): he is told, not left guessing.
            await bob.wait_for("gap", room=room, reason="broker_outage")

            # Cross-node delivery resumes, offsets keep growing (Redis came back empty).
            stop.set()
            await pumping
            ack = await alice.request("publish", room=room, data="after")
            assert ack["offset"] > 1
            after = await bob.wait_for("message", data="after")
            assert after["offset"] == ack["offset"]
            await alice2.wait_for("message", data="after", offset=ack["offset"])

            # Someone coming back asking for everything since offset 1 learns it is not whole.
            late = await ws_client(b.ws, "late-o")
            joined = await late.request("join", room=room, since=1)
            assert joined["recovered"] is False, (joined, a.output(), b.output())
    finally:
        for node in nodes:
            stop_node(node)
        with contextlib.suppress(Exception):
            server.terminate()
            server.wait(10)
