"""Deploys without a storm: ``reconnect {delay_ms}`` before 1001, and clients honour it.

A real hub is stopped (the shutdown path ``wirehub serve`` takes) and a new one
started on the same port; no client comes back before the window's minimum.
"""

from __future__ import annotations

import asyncio
import time

from security_support import start_hub_at
from support import FACTOR, TIMEOUT, open_client, start_hub
from wirehub.client import HubClient

WINDOW = (0.8, 1.6)


async def test_shutdown_sends_the_reconnect_window_before_1001():
    running = await start_hub(shutdown={"reconnect_window": [0.25, 2.5]})
    client = await open_client(running.ws, "watcher")
    stopping = asyncio.ensure_future(running.stop())
    try:
        assert await client.expect("reconnect") == {"type": "reconnect", "delay_ms": [250, 2500]}
        assert await client.closed() == (1001, "hub shutting down")
    finally:
        await stopping


async def test_no_client_reconnects_before_the_window_and_they_spread_over_it():
    first = await start_hub(shutdown={"reconnect_window": list(WINDOW)}, stats_interval=0)
    port = first.port
    lost: dict[str, float] = {}
    back: dict[str, float] = {}
    clients = []
    for i in range(10):
        client = HubClient(first.ws, client_id=f"c{i}", backoff_initial=0.05, backoff_cap=0.2)
        client.on("disconnect", lambda _e, cid=f"c{i}": lost.setdefault(cid, time.monotonic()))
        client.on(
            "connect",
            lambda _w, cid=f"c{i}": lost.get(cid) and back.setdefault(cid, time.monotonic()),
        )
        await client.connect()
        await client.join("room")
        clients.append(client)
    second = None
    try:
        await first.stop()
        second = await start_hub_at(port)
        ready = time.monotonic()  # a client due earlier retries until now (backoff cap 0.2 s)
        deadline = time.monotonic() + TIMEOUT
        while len(back) < len(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(back) == len(clients), f"not back: {set(lost) - set(back)}"
        delays = sorted(back[c] - lost[c] for c in back)
        assert delays[0] >= WINDOW[0] - 0.02, delays  # nobody before the minimum
        # Nobody later than its window's end, or than the new hub's start on a slow machine.
        late = {c: back[c] - max(lost[c] + WINDOW[1], ready) for c in back}
        assert max(late.values()) <= 0.5 * FACTOR + 0.3, (late, delays)
        assert delays[-1] - delays[0] > 0.1, delays  # spread, not one thundering herd
        for client in clients:
            await client.wait_connected(TIMEOUT)
            assert "room" in client.rooms  # re-joined on the new hub
    finally:
        for client in clients:
            await client.close()
        if second is not None:
            await second.stop()
