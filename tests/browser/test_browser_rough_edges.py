"""The pages a new user opens first, in a real browser (issue 14).

The dashboard under a low ``limits.max_rooms_per_connection`` (it still shows
the real services and jobs, says what is not live instead of "cannot
connect"), ids that never break mid-word, job rooms kept out of the Rooms
table, and the chat page's login (no app shell under it, the protocol's ids).
"""

from __future__ import annotations

import sys

import httpx
import pytest

from embedded_support import serve, tour_app
from support import FACTOR, TIMEOUT

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms

TICKER = (
    "import itertools, time\n"
    "print('ticker ready', flush=True)\n"
    "for i in itertools.count(1):\n"
    "    print(f'tick {i}', flush=True)\n"
    "    time.sleep(0.2)\n"
)


async def test_the_dashboard_shows_the_real_state_within_a_room_limit_of_3(hub_server, new_page):
    running = await hub_server(
        stats_interval=0.3,
        limits={"max_rooms_per_connection": 3},
        services=[
            {
                "name": "ticker",
                "command": [sys.executable, "-u", "-c", TICKER],
                "ready": {"log": "ticker ready"},
                "stop_timeout": 2,
            }
        ],
        jobs={"modules": ["jobs_fixtures"]},
    )
    page = await new_page(running.http + "/")
    # Connected, and saying so: a refused join is not "cannot connect".
    await page.wait_for_selector("#status.open", timeout=WAIT)
    notice = await page.wait_for_selector("#limits:not([hidden])", timeout=WAIT)
    # The refusals arrive one by one: wait for both (a wrong text never matches, and times out).
    expected = "not live (room limit 3): log tail, connections"
    await page.wait_for_function(
        "t => document.querySelector('#limits').textContent === t", arg=expected, timeout=WAIT
    )
    assert await notice.inner_text() == expected
    assert "limit_exceeded" in (await notice.get_attribute("title"))
    assert "cannot connect" not in await page.inner_text("header")
    # The service as /api/services reports it, and its log tail read over HTTP instead.
    await page.wait_for_selector('tr[data-service="ticker"][data-state="ready"]', timeout=WAIT)
    assert await page.inner_text("#services-count") == "1"
    await page.wait_for_selector("#logs div:has-text('tick 2')", timeout=WAIT)

    async with httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT) as http:
        # The dashboard holds exactly the rooms the limit allows.
        clients = (await http.get("/api/clients")).json()
        (dashboard,) = [c for c in clients if c["id"].startswith("dashboard-")]
        assert sorted(dashboard["rooms"]) == ["$hub.stats", "$jobs", "$services"]
        # A job shows up live, and its $job:<id> room stays out of the Rooms table.
        job_id = (await http.post("/api/jobs", json={"job": "count", "args": {"n": 3}})).json()[
            "job_id"
        ]
    await page.wait_for_selector(
        f'tr[data-job="{job_id}"][data-state="succeeded"][data-progress="100"]', timeout=WAIT
    )
    assert await page.inner_text("#jobs-count") == "1"
    await page.wait_for_selector("#rooms-hidden:has-text('1 job room not listed')", timeout=WAIT)
    assert await page.locator('#rooms tr[data-room^="$job:"]').count() == 0
    assert await page.locator('#rooms tr[data-room="$jobs"]').count() == 1


async def test_ids_stay_whole_in_narrow_tables(hub_server, new_page):
    running = await hub_server(stats_interval=0.3, jobs={"modules": ["jobs_fixtures"]})
    page = await new_page(running.http + "/")
    await page.set_viewport_size({"width": 760, "height": 900})
    await page.wait_for_selector("#status.open", timeout=WAIT)
    async with httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT) as http:
        job_id = (await http.post("/api/jobs", json={"job": "count", "args": {"n": 1}})).json()[
            "job_id"
        ]
    cell = f'tr[data-job="{job_id}"][data-state="succeeded"] td:first-child'
    await page.wait_for_selector(cell, timeout=WAIT)
    await page.wait_for_selector('#clients tr[data-client^="dashboard-"]', timeout=WAIT)
    # The number of line boxes the text takes: 1 means it did not wrap. The tables
    # are re-rendered live, so the cell is looked up afresh on every poll (a detached
    # cell has no boxes); a wrapped id keeps 2 and times out.
    one_line = """sel => { const el = document.querySelector(sel); if (!el) return false;
                           const r = document.createRange(); r.selectNodeContents(el);
                           return r.getClientRects().length === 1; }"""
    await page.wait_for_function(one_line, arg=cell, timeout=WAIT)
    client_cell = '#clients tr[data-client^="dashboard-"] td'
    await page.wait_for_function(one_line, arg=client_cell, timeout=WAIT)
    assert await page.inner_text(cell) == job_id  # whole, not cut, at this width


async def test_the_chat_login_hides_the_app_and_takes_any_protocol_client_id(hub_server, new_page):
    running = await hub_server(stats_interval=0)
    page = await new_page(running.http + "/chat")
    await page.wait_for_selector("#login", state="visible", timeout=WAIT)
    assert not await page.is_visible("#app")  # `hidden` wins over main { display: grid }
    check = "(el, value) => { el.value = value; return el.checkValidity(); }"
    name = page.locator("#name")
    for value, ok in [
        ("ops@plant-3:line.2", True),  # every kind of character a client id may hold
        ("x" * 128, True),
        ("has space", False),
        ("", False),
    ]:
        assert await name.evaluate(check, value) is ok, value
    await name.fill("ops@plant-3:line.2")
    await page.press("#name", "Enter")
    await page.wait_for_selector("#status.open", timeout=WAIT)
    assert await page.is_visible("#app") and not await page.is_visible("#login")
    async with httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT) as http:
        assert (await http.get("/api/clients/ops@plant-3:line.2")).status_code == 200
    assert await page.get_attribute("#name", "maxlength") == "128"


async def test_an_embedded_app_with_router_pages_runs_the_dashboard(new_page):
    app, _hub = tour_app(router_pages=True)
    async with serve(app) as base:
        page = await new_page(base + "/")
        # /static/wirehub.js and the dashboard's files come from hub.router alone.
        await page.wait_for_selector("#status.open", timeout=WAIT)
        await page.wait_for_selector('#clients tr[data-client^="dashboard-"]', timeout=WAIT)
        assert await page.locator("#limits").is_hidden()
