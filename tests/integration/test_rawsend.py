"""The frame-once writer (server.ws = "wirehub") delivers exactly what the ASGI path would."""

from __future__ import annotations

import pytest

from wirehub.web.rawsend import text_frame


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 300_000])
def test_text_frame_header_follows_rfc6455(size):
    frame = text_frame("é" * (size // 2) + "x" * (size % 2))
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
    assert frame[0] == 0x81  # FIN + text, no RSV bits
    if len(payload) < 126:
        assert frame[1] == len(payload) and frame[2:] == payload
    elif len(payload) < 65_536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == len(payload)
        assert frame[4:] == payload
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == len(payload)
        assert frame[10:] == payload


async def test_fanout_through_the_fast_writer_is_intact_for_every_size(hub_server, ws_client):
    running = await hub_server(limits={"max_frame": 1_000_000}, server={"ws_max_size": 2_000_000})
    members = [await ws_client(running.ws, f"m{i}") for i in range(3)]
    for member in members:
        await member.request("join", room="r")
    conn = running.hub.node.clients["m0"]
    assert conn.transport.raw_send  # the server offered the extension
    sizes = [1, 100, 200, 70_000, 400_000]
    for size in sizes:
        await running.hub.publish("r", "é" * size)
    for member in members:
        got = [(await member.wait_for("message"))["data"] for _ in sizes]
        assert [len(text) for text in got] == sizes and all(set(t) == {"é"} for t in got)
    assert all(c.frames_out >= len(sizes) for c in running.hub.node.clients.values())


async def test_compressed_connections_take_the_asgi_path(hub_server, ws_client):
    running = await hub_server(server={"ws_per_message_deflate": True})
    plain = await ws_client(running.ws, "plain", compression=None)
    deflated = await ws_client(running.ws, "deflated", compression="deflate")
    for client in (plain, deflated):
        await client.request("join", room="r")
    for n in range(20):
        await running.hub.publish("r", {"n": n, "pad": "z" * 500})
    for client in (plain, deflated):
        got = [(await client.wait_for("message"))["data"]["n"] for _ in range(20)]
        assert got == list(range(20))


async def test_other_uvicorn_implementations_still_work(hub_server, ws_client):
    running = await hub_server(server={"ws": "websockets-sansio"})
    client = await ws_client(running.ws, "c")
    assert not running.hub.node.clients["c"].transport.raw_send
    await client.request("join", room="r")
    await running.hub.publish("r", "hello")
    assert (await client.expect("message"))["data"] == "hello"
