"""Bytes per second per connection: ``rate_limited`` past the byte bucket, then 4029.

A few big frames stay well under the frames-per-second limit, so only the byte
bucket can refuse them; text frames are refused, binary frames (upload chunks) paced. Bounded: < 200 KB sent.
"""

from __future__ import annotations

import asyncio

import orjson

PAYLOAD = "x" * 4000  # ~4 KB a frame
LIMITS = {
    "max_frame": 8192,
    "bytes_rate": 1024,  # refills one frame in ~4 s: robust on a loaded machine
    "bytes_burst": 16384,
    "abuse_limit": 5,
    "abuse_window": 10,
}


def ping(i: int) -> str:
    return orjson.dumps({"type": "ping", "ref": i, "pad": PAYLOAD}).decode()


async def test_over_the_byte_rate_frames_get_rate_limited(hub_server, ws_client):
    running = await hub_server(limits={**LIMITS, "abuse_limit": 0})
    client = await ws_client(running.ws, "big")
    for i in range(4):  # the 16 KiB burst holds four ~4 KB frames
        await client.send_raw(ping(i))
    for i in range(4):
        assert (await client.expect("pong"))["ref"] == i
    await client.send_raw(ping(99))
    refused = await client.expect("error")
    assert refused["code"] == "rate_limited"
    assert refused["message"] == "too many bytes: at most 1024 per second (burst 16384)"
    assert refused["unit"] == "bytes" and "ref" not in refused  # dropped unparsed
    # Binary frames (upload chunks, accepted data) count too, but are paced, not
    # refused: the hub reads this one once the byte bucket has refilled for it.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send_raw(b"\0" * 1024)
    answer = await client.expect("error")
    assert answer["code"] == "bad_request", answer  # read (no upload in progress), not refused
    assert loop.time() - started >= 0.3  # ~0.7 s of byte debt at 1024 bytes/s


async def test_persistent_byte_abuse_closes_4029_and_others_lose_nothing(hub_server, ws_client):
    running = await hub_server(limits=LIMITS)
    honest = await ws_client(running.ws, "honest")
    await honest.request("join", room="r")
    abuser = await ws_client(running.ws, "abuser")
    for i in range(20):  # 80 KB: the burst, then five refusals close it
        try:
            await abuser.send_raw(ping(i))
        except Exception:
            break
    code, reason = await abuser.closed()
    assert (code, reason) == (4029, "too many frames over the rate limit")
    assert "abuser" not in running.hub.node.clients
    ack = await honest.request("publish", room="r", data="fine", echo=True)
    assert (await honest.expect("message"))["offset"] == ack["offset"]
