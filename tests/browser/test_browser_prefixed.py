"""The hub's pages in real Chromium when the app serves the hub under a path.

Two ways users put the hub somewhere other than the root: ``include_router(hub.router,
prefix=...)`` and an app holding the hub mounted in another (``root_path``). In both, the
dashboard connects and lists a client, two chat pages talk, the AsyncAPI page renders and
its document says where ``/ws`` is, every request the pages make stays under that path
and none fails, and the docs link reaches the app's own docs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from embedded_support import serve
from support import FACTOR, TIMEOUT
from wirehub import Hub, Settings
from wirehub.client import HubClient

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms


def prefixed(hub: Hub) -> FastAPI:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router, prefix="/realtime")

    @app.get("/")
    async def own_root() -> dict[str, str]:
        return {"app": "mine"}

    return app


def mounted(hub: Hub) -> FastAPI:
    inner = FastAPI()
    inner.include_router(hub.router)
    outer = FastAPI(lifespan=hub.lifespan, docs_url=None)
    outer.mount("/realtime", inner)
    return outer


@pytest.mark.parametrize(
    ("build", "docs"), [(prefixed, "/docs"), (mounted, "/realtime/docs")], ids=["prefix", "mount"]
)
async def test_the_pages_work_under_a_path(
    build: Callable[[Hub], FastAPI], docs: str, new_page: Any
) -> None:
    hub = Hub(Settings(stats_interval=0.3, router_pages=True))
    async with serve(build(hub)) as base:
        root = base + "/realtime"
        seen: list[tuple[int, str]] = []

        async def open_page(path: str) -> Any:
            page = await new_page(f"{base}/healthz")  # a first page outside what is recorded
            page.on("response", lambda r: seen.append((r.status, urlsplit(r.url).path)))
            await page.goto(root + path)
            return page

        dashboard = await open_page("/")
        await dashboard.wait_for_selector("#status.open", timeout=WAIT)
        async with HubClient(root.replace("http", "ws", 1) + "/ws", client_id="field-station"):
            await dashboard.wait_for_selector('tr[data-client="field-station"]', timeout=WAIT)

        alice = await open_page("/chat?name=alice&room=lobby")
        bob = await open_page("/chat?name=bob&room=lobby")
        for chat in (alice, bob):
            await chat.wait_for_selector("#status.open", timeout=WAIT)
        await alice.wait_for_selector('#members li[data-member="bob"]', timeout=WAIT)
        await bob.fill("#text", "hello from under a path")
        await bob.press("#text", "Enter")
        await alice.wait_for_selector(".msg.live:has-text('hello from under a path')", timeout=WAIT)

        spec = await open_page("/asyncapi")
        await spec.wait_for_selector("body[data-rendered=true]", timeout=WAIT)
        link = await spec.get_attribute("header a:has-text('OpenAPI')", "href")
        assert link == docs
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            assert (await http.get(docs)).status_code == 200
            document = (await http.get("/realtime/asyncapi.json")).json()
        assert document["servers"]["hub"]["pathname"] == "/realtime"
        assert document["channels"]["hub"]["address"] == "/ws"

    failed = [(status, path) for status, path in seen if status >= 400]
    assert not failed, failed
    outside = {path for _, path in seen if not path.startswith("/realtime/")}
    assert not outside, outside
    # The pages loaded their styles and scripts through the prefix.
    for asset in ("/realtime/static/wirehub.js", "/realtime/static/dashboard.js"):
        assert (200, asset) in seen or (304, asset) in seen
