"""wirehub.js in real Chromium refreshes its token before it expires (``getToken``).

The page's ``getToken`` asks the test (``page.expose_function``) for a fresh
1.5 s token; the hub warns before expiry, the client sends ``refresh``, and the
same socket outlives the first token.
"""

from __future__ import annotations

import time

import pytest

from security_support import jwt_auth, token
from support import FACTOR

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms


async def test_wirehub_js_refreshes_before_expiry_and_keeps_its_socket(hub_server, new_page):
    running = await hub_server(auth=jwt_auth(expiry_warning=0.7, expiry_grace=0.3))
    page = await new_page(f"{running.http}/healthz")  # any page of the hub's origin
    issued: list[float] = []

    def mint() -> str:
        exp = time.time() + 1.5
        issued.append(exp)
        return token("browser", exp=exp, rooms=["r"])

    await page.expose_function("mintToken", mint)
    await page.evaluate(
        """async () => {
          const { connect } = await import("/static/wirehub.js");
          const hub = await connect({ getToken: () => window.mintToken() });
          window.hub = hub;
          window.seen = [];
          hub.on("*", (f) => window.seen.push(f.type));
          hub.on("disconnect", (e) => window.seen.push(`closed ${e.code}`));
          await hub.join("r");
        }"""
    )
    await page.wait_for_function("window.hub.refreshes >= 1", timeout=WAIT)
    first_exp = issued[0]
    # Past the first token's exp + grace: still the same open socket, still in its room.
    await page.wait_for_timeout(max(0, (first_exp + 0.5 - time.time()) * 1000))
    state = await page.evaluate("({state: hub.state, reconnects: hub.reconnects, seen: seen})")
    assert state["state"] == "open" and state["reconnects"] == 0, state
    assert "token.expiring" in state["seen"] and not any(
        s.startswith("closed") for s in state["seen"]
    )
    conn = running.hub.node.clients["browser"]
    assert conn.meta["principal"].token.exp > first_exp
    await running.hub.publish("r", "after refresh")
    await page.wait_for_function("window.seen.includes('message')", timeout=WAIT)
    await page.evaluate("hub.close()")


async def test_the_demo_pages_work_with_auth_on_through_their_token_field(hub_server, new_page):
    running = await hub_server(auth=jwt_auth(), stats_interval=0.5)
    # Chat: a user token in the fragment fills the field (never sent in a URL to the server).
    chat_token = token("alice", rooms=["lobby"])
    chat = await new_page(f"{running.http}/chat?room=lobby#token={chat_token}")
    assert await chat.input_value("#name") == "alice"  # the JWT's sub is the client id
    await chat.press("#name", "Enter")
    await chat.wait_for_selector("#status.open", timeout=WAIT)
    await chat.fill("#text", "with a token")
    await chat.press("#text", "Enter")
    await chat.wait_for_selector(".msg.live:has-text('with a token')", timeout=WAIT)

    # Dashboard: without a token it cannot connect; the token field fixes that.
    from security_support import API_KEY

    dashboard = await new_page(f"{running.http}/")
    await dashboard.wait_for_selector("#status.closed", timeout=WAIT)
    await dashboard.fill("#token", API_KEY)
    await dashboard.press("#token", "Enter")  # stored for this tab, page reloaded
    await dashboard.wait_for_selector("#status.open", timeout=WAIT)
    # REST snapshot and live rooms both authenticated: alice shows up in the clients table.
    await dashboard.wait_for_selector('tr[data-client="alice"]', timeout=WAIT)
