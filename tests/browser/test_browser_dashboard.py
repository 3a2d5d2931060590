"""The dashboard in a real browser, fed live by the system rooms of a real hub:
a client connecting, a TCP frame arriving, a service changing state (with its
log tail following) and a job's progress bar reaching 100%."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from support import FACTOR, TIMEOUT
from wirehub.client import HubClient

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms

TICKER = (
    "import itertools, sys, time\n"
    "print('ticker ready', flush=True)\n"
    "for i in itertools.count(1):\n"
    "    print(f'tick {i}', flush=True)\n"
    "    time.sleep(0.2)\n"
)


async def test_dashboard_follows_clients_bridges_services_and_jobs(
    hub_server, new_page, screenshot_dir
):
    running = await hub_server(
        stats_interval=0.3,
        bridges=[{"name": "sensors", "port": 0, "room": "sensors", "framing": "line"}],
        services=[
            {
                "name": "ticker",
                "command": [sys.executable, "-u", "-c", TICKER],
                "ready": {"log": "ticker ready"},
                "stop_timeout": 2,
            }
        ],
        jobs={"modules": ["jobs_fixtures"], "concurrency": 2},
    )
    page = await new_page(running.http + "/")
    await page.wait_for_selector("#status.open", timeout=WAIT)
    # The service was already ready before the page loaded: it comes from the snapshot,
    # and its log tail follows live.
    await page.wait_for_selector('tr[data-service="ticker"][data-state="ready"]', timeout=WAIT)
    await page.wait_for_selector("#logs div:has-text('tick 3')", timeout=WAIT)
    # Stats snapshots arrive every 0.3 s and draw the charts.
    await page.wait_for_selector("#c-connections polyline", state="attached", timeout=WAIT)

    # A client connecting shows up, with its room.
    async with HubClient(running.ws, client_id="field-station") as viewer:
        await page.wait_for_selector('tr[data-client="field-station"]', timeout=WAIT)
        await viewer.join("sensors")
        await page.wait_for_selector(
            'tr[data-client="field-station"] td:has-text("sensors")', timeout=WAIT
        )

        # A TCP frame arriving through the bridge: clients and frames counted live.
        async with httpx.AsyncClient(base_url=running.http) as http:
            bridge = (await http.get("/api/bridges/sensors")).json()
        _reader, writer = await asyncio.open_connection("127.0.0.1", bridge["port"])
        try:
            writer.write(b"temp=21.5\n")
            await writer.drain()
            got = await viewer.messages("sensors").__anext__()
            assert got["data"] == "temp=21.5"
            await page.wait_for_selector(
                'tr[data-bridge="sensors"][data-frames-in="1"] td.clients:text-is("1")',
                timeout=WAIT,
            )
        finally:
            writer.close()
            await writer.wait_closed()

        # A job's progress bar reaching 100%, with its result.
        handle = await viewer.submit("count", {"n": 5, "delay": 0.15})
        row = f'tr[data-job="{handle.job_id}"]'
        await page.wait_for_selector(f'{row}[data-state="running"]', timeout=WAIT)
        assert await handle.result(TIMEOUT) == 15
        await page.wait_for_selector(
            f'{row}[data-state="succeeded"][data-progress="100"]', timeout=WAIT
        )
        await page.wait_for_selector(f"{row} td:last-child:text-is('15')", timeout=WAIT)
        failing = await viewer.submit("boom", {"message": "sensor on fire"})
        await page.wait_for_selector(
            f'tr[data-job="{failing.job_id}"][data-state="failed"] td:has-text("sensor on fire")',
            timeout=WAIT,
        )

        # A service changing state: stopped through the API, then started again.
        async with httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT) as http:
            assert (await http.post("/api/services/ticker/stop")).status_code == 200
            await page.wait_for_selector(
                'tr[data-service="ticker"][data-state="stopped"]', timeout=WAIT
            )
            assert (await http.post("/api/services/ticker/start")).status_code == 200
        await page.wait_for_selector('tr[data-service="ticker"][data-state="ready"]', timeout=WAIT)
        await page.wait_for_selector("#logs div:has-text('ticker ready') ~ div", timeout=WAIT)

        await page.screenshot(path=str(screenshot_dir / "dashboard.png"), full_page=True)

    # ...and a client leaving disappears.
    await page.wait_for_selector('tr[data-client="field-station"]', state="detached", timeout=WAIT)
