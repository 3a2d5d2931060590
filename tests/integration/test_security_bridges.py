"""TCP bridges: a CIDR allowlist and a cap on clients per source address."""

from __future__ import annotations

import asyncio

from support import TIMEOUT, unused_port


async def _refused(port: int) -> None:
    """Connect; the bridge must close the socket without reading from it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b""
    finally:
        writer.close()


async def test_addresses_outside_allow_from_are_refused(hub_server, ws_client):
    shut, open_ = unused_port(), unused_port()
    running = await hub_server(
        bridges=[
            {
                "name": "lan",
                "port": shut,
                "room": "lan",
                "allow_from": ["10.0.0.0/8", "192.168.0.0/16"],
            },
            {"name": "local", "port": open_, "room": "local", "allow_from": ["127.0.0.0/8", "::1"]},
        ]
    )
    watcher = await ws_client(running.ws, "watcher")
    await watcher.request("join", room="$bridges")
    await watcher.request("join", room="local")
    await _refused(shut)
    event = await watcher.wait_for("message", room="$bridges")
    assert event["data"]["event"] == "error" and event["data"]["code"] == "forbidden"
    assert event["data"]["message"] == "address 127.0.0.1 is not in the allowed networks"
    assert running.hub.bridges["lan"].clients == {}

    _, writer = await asyncio.open_connection("127.0.0.1", open_)
    writer.write(b"hello\n")
    await writer.drain()
    message = await watcher.wait_for("message", room="local")
    assert message["data"] == "hello"
    writer.close()


async def test_clients_per_source_address_are_capped(hub_server, ws_client):
    port = unused_port()
    running = await hub_server(
        bridges=[{"name": "dev", "port": port, "room": "dev", "max_clients_per_ip": 2}]
    )
    watcher = await ws_client(running.ws, "watcher")
    await watcher.request("join", room="dev")
    await watcher.request("join", room="$bridges")
    kept = []
    for _ in range(2):
        kept.append(await asyncio.open_connection("127.0.0.1", port))
        await watcher.wait_for("presence", room="dev", event="join")
    await _refused(port)
    event = await watcher.wait_for("message", room="$bridges")
    assert event["data"]["code"] == "limit_exceeded"
    assert event["data"]["message"] == "address 127.0.0.1 already has 2 connections"
    # one goes, another may come
    kept[0][1].close()
    await watcher.wait_for("presence", room="dev", event="leave")
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    await watcher.wait_for("presence", room="dev", event="join")
    writer.close()
    kept[1][1].close()
