"""wirehub.js in real Chromium with ``batch: true`` (docs/protocol.md, "Batched frames").

Against a peer that batches (batch_support.BatchingPeer) the client asks with
``batch=1``, splits each text frame and dispatches every message once, in order,
dropping a piece that is not JSON; against a real hub a burst of 200 publishes
reaches a batch client and a plain one alike. Frames are counted as Chromium
received them (Playwright's WebSocket events), so "batched" is observed, not assumed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from batch_support import BatchingPeer, message
from support import FACTOR

WAIT = 10_000 * FACTOR  # ms
BURST = 200

#: Connect, join "feed"/"burst", and keep what arrives in ``window.seen[name]``.
JOIN = """async ({ url, name, batch, room }) => {
  const { connect } = await import("/static/wirehub.js");
  const hub = await connect({ url: url || undefined, clientId: `js-${name}`, batch,
                              reconnect: false });
  window.seen = window.seen || {};
  window.hubs = window.hubs || {};
  const seen = (window.seen[name] = []);
  window.hubs[name] = hub;
  hub.on("message", (m) => seen.push(m.offset));
  await hub.join(room);
  return { welcomeBatch: hub.welcome.batch ?? null, clientId: hub.clientId };
}"""


def text_frames(page: Any) -> dict[str, list[str]]:
    """Text frames Chromium received, per socket's ``client_id`` (recorded from now on)."""
    frames: dict[str, list[str]] = {}

    def on_socket(ws: Any) -> None:
        client_id = parse_qs(urlsplit(ws.url).query).get("client_id", ["?"])[0]
        got = frames.setdefault(client_id, [])
        ws.on(
            "framereceived",
            lambda payload: got.append(payload) if isinstance(payload, str) else None,
        )

    page.on("websocket", on_socket)
    return frames


async def test_wirehub_js_splits_batched_frames_and_drops_a_bad_piece(hub_server, new_page):
    running = await hub_server()
    extra = [
        f"{orjson.dumps(message('feed', 41)).decode()}\nnot json\n"
        f"{orjson.dumps(message('feed', 42)).decode()}"
    ]
    async with BatchingPeer(messages=40, per_frame=16, extra=extra) as peer:
        page = await new_page(f"{running.http}/healthz")  # any page of the hub's origin
        frames = text_frames(page)
        info = await page.evaluate(
            JOIN, {"url": peer.url, "name": "peer", "batch": True, "room": "feed"}
        )
        await page.wait_for_function("() => window.seen.peer.length >= 42", timeout=WAIT)
        # The connection goes on: a request after the bad piece still gets its reply.
        assert (await page.evaluate("window.hubs.peer.request('ping')"))["type"] == "pong"
        seen = await page.evaluate("window.seen.peer")
        await page.evaluate("window.hubs.peer.close()")
    assert info["welcomeBatch"] is True
    assert seen == list(range(1, 43))
    assert parse_qs(urlsplit(peer.paths[0]).query)["batch"] == ["1"]
    assert peer.frames == [16, 16, 9]
    assert max(frame.count("\n") for frame in frames["js-peer"]) == 15  # it did get batches


async def test_wirehub_js_with_batch_gets_a_whole_burst_from_a_real_hub(hub_server, new_page):
    running = await hub_server()
    page = await new_page(f"{running.http}/healthz")
    frames = text_frames(page)
    batched = await page.evaluate(
        JOIN, {"url": "", "name": "batched", "batch": True, "room": "burst"}
    )
    plain = await page.evaluate(JOIN, {"url": "", "name": "plain", "batch": False, "room": "burst"})
    assert (batched["welcomeBatch"], plain["welcomeBatch"]) == (True, None)
    for i in range(BURST):  # one loop pass: nothing here waits
        await running.hub.publish("burst", {"i": i, "text": "line\nbreak"})
    await page.wait_for_function(
        "n => window.seen.batched.length >= n && window.seen.plain.length >= n",
        arg=BURST,
        timeout=WAIT,
    )
    seen = await page.evaluate("window.seen")
    await page.evaluate("Object.values(window.hubs).forEach((hub) => hub.close())")
    assert seen["batched"] == list(range(1, BURST + 1))
    assert seen["plain"] == list(range(1, BURST + 1))
    assert any("\n" in frame for frame in frames["js-batched"])  # batches reached Chromium
    assert not any("\n" in frame for frame in frames["js-plain"])
