"""Hostile and broken frames: a precise error, the connection goes on, others see nothing."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
async def pair(hub_server, ws_client):
    # rate 0: these tests flood on purpose to reach the other limits (test_security covers the rate).
    running = await hub_server(
        limits={"max_frame": 4096, "max_rooms_per_connection": 50, "rate": 0}
    )
    bystander = await ws_client(running.ws, "bystander")
    await bystander.request("join", room="r")
    client = await ws_client(running.ws, "client")
    await client.request("join", room="r")
    await bystander.expect("presence", event="join", client_id="client")
    return running, client, bystander


async def assert_still_usable(client, bystander):
    ack = await client.request("publish", room="r", data="after")
    assert ack["type"] == "ack"
    msg = await bystander.expect("message", data="after")  # nothing else came before it
    assert msg["offset"] == ack["offset"]


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("{not json", "bad_request", "invalid JSON"),
        ("[1,2,3]", "bad_request", "a frame must be a JSON object, got list"),
        ("42", "bad_request", "a frame must be a JSON object, got int"),
        ('{"type":"teleport"}', "unknown_type", "unknown frame type 'teleport'"),
        ('{"data":1}', "bad_request", "missing field 'type'"),
        ('{"type":"join"}', "bad_request", "missing field 'room'"),
        (
            '{"type":"join","room":5}',
            "bad_request",
            "field 'room' must be a non-empty string, got integer",
        ),
        ('{"type":5}', "bad_request", "field 'type' must be a non-empty string, got integer"),
        (
            '{"type":"publish","room":"r","data":1,"echo":"yes"}',
            "bad_request",
            "field 'echo' must be true or false, got string",
        ),
        ('{"type":"join","room":"a b"}', "bad_request", "field 'room' is not a valid room name"),
        (
            '{"type":"join","room":"r","since":"x"}',
            "bad_request",
            "field 'since' must be an integer",
        ),
        ('{"type":"publish","room":"r"}', "bad_request", "missing field 'data'"),
        ('{"type":"direct","data":1}', "bad_request", "missing field 'to'"),
        ('{"type":"leave","room":"never"}', "not_found", "not a member of room 'never'"),
        ('{"type":"presence","room":"nowhere"}', "not_found", "room 'nowhere' does not exist"),
    ],
)
async def test_malformed_frames_get_their_error_code(pair, raw, code, message):
    _, client, bystander = pair
    await client.send_raw(raw)
    error = await client.expect("error")
    assert error["code"] == code
    assert error["message"].startswith(message)
    await assert_still_usable(client, bystander)


async def test_error_echoes_the_ref_of_the_bad_frame(pair):
    _, client, _ = pair
    await client.send_raw('{"type":"join","ref":"abc"}')
    assert (await client.expect("error"))["ref"] == "abc"


async def test_oversized_frame_is_rejected_and_the_connection_stays(pair):
    _, client, bystander = pair
    await client.send(type="publish", room="r", data="x" * 5000, ref="big")
    error = await client.expect("error")
    assert error["code"] == "too_large"
    assert "ref" not in error  # an oversized frame is not parsed, so its ref is unknown

    assert "exceeds the limit of 4096" in error["message"]
    await assert_still_usable(client, bystander)


async def test_frame_over_the_transport_cap_closes_with_1009(hub_server, ws_client):
    running = await hub_server(server={"ws_max_size": 8192})
    bystander = await ws_client(running.ws, "bystander")
    client = await ws_client(running.ws, "client")
    await client.send_raw("x" * 20000)
    code, _ = await client.closed()
    assert code == 1009
    assert (await bystander.request("ping"))["type"] == "pong"


async def test_binary_frame_without_upload_is_a_bad_request(pair):
    _, client, bystander = pair
    await client.send_raw(b"\x00\x01\x02")
    error = await client.expect("error")
    assert error["code"] == "bad_request"
    assert error["message"] == "binary frame received but no upload is in progress"
    await assert_still_usable(client, bystander)


async def test_ten_thousand_joins_hit_the_room_limit(pair):
    running, client, bystander = pair
    frames = [f'{{"type":"join","room":"flood-{i}"}}' for i in range(10_000)]
    for frame in frames:
        await client.send_raw(frame)
    joined = errors = 0
    while joined + errors < 10_000:
        frame = await client.recv()
        if frame["type"] == "joined":
            joined += 1
        elif frame["type"] == "error":
            assert frame["code"] == "limit_exceeded"
            assert frame["message"] == "a connection may be in at most 50 rooms"
            errors += 1
    assert joined == 49  # plus "r" makes 50
    assert errors == 10_000 - 49
    assert len(running.hub.node.clients["client"].rooms) == 50
    await assert_still_usable(client, bystander)


async def test_bad_frames_do_not_disturb_a_busy_room(pair, ws_client):
    running, client, bystander = pair
    sender = await ws_client(running.ws, "sender")
    await sender.request("join", room="r")

    async def garbage() -> None:
        for i in range(200):
            await client.send_raw(["{", "[]", '{"type":1}', '{"type":"nope"}'][i % 4])

    async def traffic() -> list[int]:
        return [(await sender.request("publish", room="r", data=i))["offset"] for i in range(200)]

    _, offsets = await asyncio.gather(garbage(), traffic())
    received = []
    while len(received) < 200:
        frame = await bystander.recv()
        if frame["type"] == "message":
            received.append(frame["offset"])
    assert received == offsets
    errors = [await client.wait_for("error") for _ in range(200)]

    assert {e["code"] for e in errors} == {"bad_request", "unknown_type"}
