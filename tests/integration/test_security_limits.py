"""Every limit with its error code, hit on a real hub; the others go on undisturbed."""

from __future__ import annotations

import asyncio
import hashlib

from security_support import handshake_refusal
from support import FACTOR, TIMEOUT


async def _until(predicate, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


async def test_frames_over_the_rate_get_rate_limited_and_the_connection_goes_on(
    hub_server, ws_client
):
    running = await hub_server(limits={"rate": 1, "burst": 5, "abuse_limit": 0})
    client = await ws_client(running.ws, "eager")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(30):
        await client.send(type="ping")
    pongs = errors = 0
    while pongs + errors < 30:
        frame = await client.recv()
        if frame["type"] == "pong":
            pongs += 1
        else:
            assert frame["type"] == "error" and frame["code"] == "rate_limited"
            assert frame["message"] == "too many frames: at most 1 per second (burst 5)"
            errors += 1
    # The burst, plus one token per second that passed while sending.
    assert 5 <= pongs <= 5 + int(loop.time() - started) + 1
    assert errors == 30 - pongs
    # the bucket refills: the same connection is served again (a refused frame
    # is not parsed, so its error carries no ref)
    for _ in range(int(40 * FACTOR)):
        await client.send(type="ping")
        reply = await client.recv()
        if reply["type"] == "pong":
            break
        assert reply["code"] == "rate_limited" and "ref" not in reply
        await asyncio.sleep(0.1)
    assert reply["type"] == "pong"


async def test_persistent_abuse_closes_with_4029_and_others_lose_nothing(hub_server, ws_client):
    running = await hub_server(limits={"rate": 20, "burst": 20, "abuse_limit": 50})
    bystander = await ws_client(running.ws, "bystander")
    await bystander.request("join", room="r")
    talker = await ws_client(running.ws, "talker")
    await talker.request("join", room="r")
    abuser = await ws_client(running.ws, "abuser")
    for _ in range(500):
        await abuser.send_raw('{"type":"ping"}')
    code, reason = await abuser.closed()
    assert code == 4029 and reason == "too many frames over the rate limit"
    for i in range(10):
        await talker.request("publish", room="r", data=i)
    got = [(await bystander.wait_for("message"))["data"] for _ in range(10)]
    assert got == list(range(10))
    assert "abuser" not in running.hub.node.clients


async def test_connections_per_ip_are_capped_at_the_handshake(hub_server, ws_client):
    running = await hub_server(limits={"max_connections_per_ip": 2})
    first = await ws_client(running.ws, "one")
    await ws_client(running.ws, "two")
    status, body, _ = await handshake_refusal(running.ws + "?client_id=three")
    assert status == 429
    assert body["detail"] == {
        "code": "limit_exceeded",
        "message": "at most 2 connections per IP address",
        "limit": 2,
    }
    await first.close()
    gate = running.hub.router.routes[0].app.gate
    await _until(lambda: gate.open["127.0.0.1"] == 1, "the closed connection is released")
    await ws_client(running.ws, "three")


async def test_rooms_per_connection_and_members_per_room(hub_server, ws_client):
    running = await hub_server(
        limits={"max_rooms_per_connection": 2}, rooms=[{"pattern": "small:*", "max_members": 2}]
    )
    a = await ws_client(running.ws, "a")
    b = await ws_client(running.ws, "b")
    c = await ws_client(running.ws, "c")
    await a.request("join", room="x")
    await a.request("join", room="y")
    refused = await a.request("join", room="z")
    assert (
        refused["code"] == "limit_exceeded"
        and refused["message"] == "a connection may be in at most 2 rooms"
    )
    await b.request("join", room="small:1")
    await c.request("join", room="small:1")
    await a.request("leave", room="y")  # a has room for one more, small:1 has none
    refused = await a.request("join", room="small:1")
    assert (
        refused["code"] == "limit_exceeded"
        and refused["message"] == "room 'small:1' is full (2 members)"
    )


async def test_frame_size_two_tiers_too_large_then_1009(hub_server, ws_client):
    running = await hub_server(limits={"max_frame": 1024}, server={"ws_max_size": 4096})
    client = await ws_client(running.ws, "big")
    await client.send(type="ping", pad="x" * 2000)
    error = await client.expect("error", code="too_large")
    assert error["message"] == "frame of 2024 bytes exceeds the limit of 1024"
    assert (await client.request("ping"))["type"] == "pong"
    await client.send_raw("x" * 5000)
    code, _ = await client.closed()
    assert code == 1009


async def test_upload_size_and_concurrent_uploads(hub_server, ws_client, tmp_path):
    running = await hub_server(
        uploads={"dir": str(tmp_path), "max_size": 4096, "chunk_size": 1024, "max_concurrent": 2}
    )
    client = await ws_client(running.ws, "up")
    digest = hashlib.sha256(b"x").hexdigest()
    refused = await client.request("upload.start", name="big.bin", size=5000, sha256=digest)
    assert (
        refused["code"] == "too_large"
        and refused["message"] == "upload of 5000 bytes exceeds the limit of 4096 bytes"
    )
    for i in range(2):
        assert (await client.request("upload.start", name=f"f{i}", size=1, sha256=digest))[
            "type"
        ] == "upload.ready"
    refused = await client.request("upload.start", name="f3", size=1, sha256=digest)
    assert (
        refused["code"] == "limit_exceeded"
        and refused["message"] == "a connection may have at most 2 unfinished uploads"
    )


async def test_job_submissions_per_minute_per_client(hub_server, ws_client):
    running = await hub_server(
        limits={"job_submits_per_minute": 3}, jobs={"modules": ["jobs_fixtures"]}
    )
    client = await ws_client(running.ws, "submitter")
    for i in range(3):
        assert (await client.request("job.submit", job="echo", args={"value": i}))[
            "type"
        ] == "job.accepted"
    refused = await client.request("job.submit", job="echo", args={"value": 3})
    assert (
        refused["code"] == "rate_limited"
        and refused["message"] == "too many job submissions: at most 3 per minute"
    )
    # the limit is per client: a reconnect under the same id does not reset it, another id is served
    await client.close()
    again = await ws_client(running.ws, "submitter")
    assert (await again.request("job.submit", job="echo"))["code"] == "rate_limited"
    other = await ws_client(running.ws, "other")
    assert (await other.request("job.submit", job="echo"))["type"] == "job.accepted"
