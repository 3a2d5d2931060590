"""A stall of the event loop is visible in production: /metrics and the stats room."""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from wirehub.core.looplag import LoopLagMonitor


def _bucket(text: str, le: str) -> float:
    match = re.search(rf'wirehub_loop_lag_seconds_bucket{{le="{re.escape(le)}"}} ([0-9.e+]+)', text)
    assert match, text
    return float(match.group(1))


async def test_a_blocking_handler_shows_as_loop_lag(hub_server, ws_client):
    running = await hub_server(stats_interval=0.2)

    @running.hub.on("stall")
    async def stall(conn, frame):
        time.sleep(0.3)  # noqa: ASYNC251 - the bug a user would ship: blocking work on the loop
        return {"type": "stalled"}

    async with httpx.AsyncClient(base_url=running.http) as http:
        before = (await http.get("/metrics")).text
        # Every sample so far was well under a tenth of a second.
        assert _bucket(before, "0.1") == _bucket(before, "+Inf")
        dash = await ws_client(running.ws, "dash")
        await dash.request("join", room="$hub.stats")
        await dash.request("stall")
        after = (await http.get("/metrics")).text
        # The timer due during the 300 ms stall ran at least 200 ms late.
        assert _bucket(after, "+Inf") - _bucket(after, "0.1") >= 1
        # The dashboard's tile: the worst lag of a stats period shows the stall.
        worst = 0.0
        deadline = time.monotonic() + 5
        while worst < 150 and time.monotonic() < deadline:
            snapshot = (await dash.wait_for("message", room="$hub.stats"))["data"]
            worst = max(worst, snapshot["loop_lag_max_ms"])
        assert worst >= 150


async def test_monitor_reports_the_worst_lag_once_per_period():
    seen: list[float] = []
    monitor = LoopLagMonitor(interval=0.01, observe=seen.append)
    monitor.start()
    try:
        while len(seen) < 2:
            await _tick()
        time.sleep(0.1)  # noqa: ASYNC251 - a stall of the loop
        while len(seen) < 4:
            await _tick()
        assert monitor.take_max() >= 0.09
        assert monitor.take_max() < 0.09  # reset: the next period starts clean
    finally:
        monitor.stop()
    assert not monitor.running


async def _tick() -> None:
    await asyncio.sleep(0.005)
