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


async def test_a_tcp_client_over_the_rate_is_dropped_then_closed(hub_server, ws_client):
    port = unused_port()
    running = await hub_server(
        bridges=[{"name": "fast", "port": port, "room": "fast", "rate": 5, "burst": 5}]
    )
    watcher = await ws_client(running.ws, "watcher")
    await watcher.request("join", room="fast")
    await watcher.request("join", room="$bridges")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await watcher.wait_for("presence", room="fast", event="join")
    writer.write(b"".join(b"%d\n" % i for i in range(300)))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b""  # closed by the hub
    writer.close()
    delivered, events = [], []
    while True:  # everything the watcher saw, up to the client's leave
        frame = await watcher.recv()
        if frame["type"] == "message" and frame["room"] == "fast":
            delivered.append(frame["data"])
        elif frame["type"] == "message" and frame["room"] == "$bridges":
            events.append(frame["data"])
        elif frame["type"] == "presence" and frame["event"] == "leave":
            break
    assert [(e["code"], e["message"]) for e in events] == [
        ("rate_limited", "too many frames over the rate limit")
    ]
    assert 5 <= len(delivered) <= 7  # the burst (plus what refilled), in order
    assert delivered == [str(i) for i in range(len(delivered))]
    assert running.hub.bridges["fast"].drops >= 100
