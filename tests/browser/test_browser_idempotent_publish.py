"""The browser client's ``publish(room, data, { idempotencyKey })`` in real Chromium:
a retry with the same key is answered with the first offset and delivered once."""

from __future__ import annotations

from support import FACTOR

WAIT = 10_000 * FACTOR  # ms

SCRIPT = """async () => {
  const { HubClient } = await import("/static/wirehub.js");
  const hub = new HubClient({ clientId: "js-writer" });
  await hub.connect();
  await hub.join("js");
  const first = await hub.publish("js", "hello", { idempotencyKey: "evt-1" });
  const retry = await hub.publish("js", "hello", { idempotencyKey: "evt-1" });
  const other = await hub.publish("js", "again");
  await hub.publish("js", "end");
  hub.close();
  return [first, retry, other];
}"""


async def test_the_browser_client_sends_its_idempotency_key(hub_server, ws_client, new_page):
    running = await hub_server()
    reader = await ws_client(running.ws, "reader")
    await reader.request("join", room="js")
    page = await new_page(running.http + "/healthz")
    page.set_default_timeout(WAIT)
    assert await page.evaluate(SCRIPT) == [1, 1, 2]
    seen = []
    while (frame := await reader.wait_for("message", room="js"))["data"] != "end":
        seen.append(frame["data"])
    assert seen == ["hello", "again"]
