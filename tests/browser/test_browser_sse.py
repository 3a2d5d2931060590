"""Chromium's own ``EventSource`` on a room's SSE stream (``GET /api/rooms/{room}/events``).

A page opens an EventSource, a publish arrives as a ``message`` event with the
offset as its ``lastEventId``; when the hub ends the stream the browser
reconnects by itself with ``Last-Event-ID`` and gets exactly what it missed.
"""

from __future__ import annotations

import pytest

from support import FACTOR

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms

OPEN = """url => {
    window.got = [];
    window.opens = 0;
    window.ids = [];
    const source = new EventSource(url);
    window.source = source;
    source.addEventListener("open", () => { window.opens += 1; });
    source.addEventListener("joined", e => { window.joined = JSON.parse(e.data); });
    source.addEventListener("message", e => {
        window.got.push(JSON.parse(e.data).data);
        window.ids.push(e.lastEventId);
    });
}"""


async def test_an_event_source_gets_live_messages_and_resumes_after_a_drop(hub, new_page):
    page = await new_page(hub.http + "/healthz")  # same origin as the stream
    await page.evaluate(OPEN, "/api/rooms/board/events?client_id=browser")
    await page.wait_for_function("window.joined !== undefined", timeout=WAIT)
    assert "browser" in hub.hub.node.clients
    assert hub.hub.node.clients["browser"].kind == "sse"

    await hub.hub.publish("board", {"n": 1})
    await hub.hub.publish("board", {"n": 2})
    await page.wait_for_function("window.got.length === 2", timeout=WAIT)
    assert await page.evaluate("window.ids") == ["1", "2"]

    # The hub ends the stream; what is published meanwhile is replayed on the
    # browser's own reconnect (Last-Event-ID: 2), then live messages follow.
    await hub.hub.disconnect("browser")
    await hub.hub.publish("board", {"n": 3})
    await hub.hub.publish("board", {"n": 4})
    await page.wait_for_function("window.opens === 2 && window.got.length === 4", timeout=WAIT)
    await hub.hub.publish("board", {"n": 5})
    await page.wait_for_function("window.got.length === 5", timeout=WAIT)
    assert await page.evaluate("window.got") == [{"n": n} for n in range(1, 6)]
    assert await page.evaluate("window.ids") == ["1", "2", "3", "4", "5"]
    assert (await page.evaluate("window.joined"))["recovered"] is True
    await page.evaluate("window.source.close()")
