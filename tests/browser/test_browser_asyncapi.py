"""The ``/asyncapi`` page in real Chromium: the frames and a typed handler's fields, offline.

Every request the page makes is recorded: all of them go to the hub itself (no
CDN), and the page is reachable from ``/docs`` and from the dashboard.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from support import FACTOR
from typed_models import Order, Typing, TypingAck

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms


async def test_the_page_renders_frames_and_typed_fields(hub, new_page):
    @hub.hub.on("chat.typing", model=Typing, reply_model=TypingAck)
    async def typing(conn: object, message: Typing) -> TypingAck:
        """Tell a room that someone is typing."""
        return TypingAck(room=message.room, chars=len(message.text))

    hub.hub.room("orders:*", model=Order)

    page = await new_page(hub.http + "/healthz")
    hosts: list[str] = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
    await page.goto(hub.http + "/asyncapi")
    await page.wait_for_selector("body[data-rendered=true]", timeout=WAIT)

    frames = await page.eval_on_selector_all(
        "article[data-frame]", "cards => cards.map(c => c.dataset.frame)"
    )
    for name in ("welcome", "join", "joined", "publish", "message", "error", "job.submit"):
        assert name in frames
    # The typed handler: its summary, its model's fields, its reply.
    card = page.locator("#client-frames article#message-chat\\.typing")
    await card.wait_for(timeout=WAIT)
    text = await card.inner_text()
    assert "Tell a room that someone is typing." in text
    fields = await card.locator("tr[data-field]").evaluate_all(
        "rows => rows.map(r => r.dataset.field)"
    )
    assert fields == ["ref", "room", "text"]
    assert "chat.typing.ok" in text  # the reply, linked
    reply = page.locator("#server-frames article#message-chat\\.typing\\.ok")
    assert "chars" in await reply.inner_text()
    # The typed room's model, and built-in frames on the right side.
    order = page.locator("article[data-model=Order]")
    assert "currency" in await order.inner_text()
    assert await page.locator("#client-frames article#message-join").count() == 1
    assert await page.locator("#server-frames article#message-joined").count() == 1
    assert set(hosts) == {f"127.0.0.1:{hub.port}"}


async def test_the_page_is_linked_from_docs_and_the_dashboard(hub, new_page):
    page = await new_page(hub.http + "/")  # the dashboard (demo is on by default)
    await page.click("nav a[href='asyncapi']")
    await page.wait_for_selector("body[data-rendered=true]", timeout=WAIT)
    assert page.url == hub.http + "/asyncapi"

    # /docs is FastAPI's Swagger UI, loaded from a CDN this machine may not reach: the link
    # is in the OpenAPI description that page renders, so read it where the page does.
    page = await new_page(hub.http + "/healthz")
    info = await page.evaluate("fetch('/openapi.json').then(r => r.json()).then(d => d.info)")
    assert "](/asyncapi)" in info["description"]
