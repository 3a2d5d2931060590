"""TCP bridges: start, stop, the HTTP API, stats events and the CLI helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import httpx
import orjson
import pytest

from support import FACTOR, TIMEOUT, spawn_hub, unused_port
from wirehub.errors import ConfigError
from wirehub.hub import Hub
from wirehub.settings import load_settings


def pending_tasks() -> list[asyncio.Task]:
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not me and not t.done()]


async def until(check, what: str) -> None:
    """Poll an in-process condition (no socket to wait on) up to TIMEOUT."""
    for _ in range(int(TIMEOUT * FACTOR / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(what)


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- start -------------------------------------------------------------------------------


async def test_taken_port_fails_start_and_closes_the_bridges_already_open():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    free = unused_port()
    hub = Hub(
        load_settings(
            None,
            stats_interval=0,
            bridges=[{"name": "first", "port": free}, {"name": "second", "port": taken}],
        )
    )
    try:
        with pytest.raises(ConfigError) as info:
            await hub.start()
        assert str(info.value).startswith(f"bridge 'second' cannot listen on 127.0.0.1:{taken}: ")
        # Nothing half-started: the first bridge's port is closed again.
        assert refused(free)
        assert not hub.accepting and not hub.bridges["first"].listening
        assert pending_tasks() == []
    finally:
        blocker.close()


async def test_taken_port_stops_wirehub_serve_with_a_message(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        config = tmp_path / "hub.toml"
        config.write_text(f'[[bridges]]\nname = "plc"\nport = {taken}\nroom = "plc"\n')
        with pytest.raises(RuntimeError) as info:
            await asyncio.to_thread(spawn_hub, config)
    assert "hub exited with 0" not in str(info.value)
    assert f"bridge 'plc' cannot listen on 127.0.0.1:{taken}: Address already in use" in str(
        info.value
    )


async def test_a_codec_that_does_not_import_fails_start_before_any_port_opens():
    port = unused_port()
    hub = Hub(
        load_settings(
            None,
            stats_interval=0,
            bridges=[{"name": "dev", "port": port, "decoder": "no_such_module:decode"}],
        )
    )
    with pytest.raises(ConfigError, match="bridge 'dev': decoder 'no_such_module:decode'"):
        await hub.start()
    assert refused(port)


async def test_config_rejects_duplicate_names_and_ports():
    port = unused_port()
    with pytest.raises(ConfigError, match="bridges: each name may appear once"):
        load_settings(None, bridges=[{"name": "a", "port": port}, {"name": "a", "port": 0}])
    with pytest.raises(ConfigError, match="two bridges listen on the same host and port"):
        load_settings(None, bridges=[{"name": "a", "port": port}, {"name": "b", "port": port}])
    with pytest.raises(ConfigError, match=r"bridges\.0\.direction"):
        load_settings(None, bridges=[{"name": "a", "port": port, "direction": "sideways"}])


# -- stop --------------------------------------------------------------------------------


async def test_shutdown_with_connected_clients_closes_everything(hub_server):
    running = await hub_server(
        bridges=[{"name": "a", "port": unused_port()}, {"name": "b", "port": unused_port()}]
    )
    ports = [running.hub.bridges[n].port for n in ("a", "b")]
    streams = [await asyncio.open_connection("127.0.0.1", p) for p in ports for _ in range(3)]
    await until(
        lambda: sum(len(b.clients) for b in running.hub.bridges.values()) == 6, "6 TCP clients"
    )
    # One client is mid-line when the hub stops.
    streams[0][1].write(b"half a li")
    await running.stop()
    for reader, writer in streams:
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
    assert all(refused(p) for p in ports)
    assert running.hub.node.clients == {}
    assert pending_tasks() == []


async def test_readiness_lists_each_bridge(hub_server):
    running = await hub_server(bridges=[{"name": "a", "port": unused_port()}])
    async with httpx.AsyncClient(base_url=running.http) as http:
        r = await http.get("/readyz")
    assert r.status_code == 200
    assert "bridge:a" in r.text


# -- HTTP API and stats events --------------------------------------------------------------


async def test_bridges_api_and_periodic_stats(hub_server, ws_client):
    running = await hub_server(
        stats_interval=0.2,
        bridges=[
            {"name": "lines", "port": unused_port(), "room": "plant"},
            {"name": "json", "port": 0, "framing": "jsonl", "direction": "in"},
        ],
    )
    ws = await ws_client(running.ws, "dash")
    await ws.request("join", room="$bridges")
    await ws.request("join", room="plant")
    port = running.hub.bridges["lines"].port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"one\ntwo\n")
        await ws.wait_for("message", room="plant", data="two")
        await ws.request("publish", room="plant", data="back")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"back\n"
        async with httpx.AsyncClient(base_url=running.http) as http:
            listed = (await http.get("/api/bridges")).json()
            one = (await http.get("/api/bridges/lines")).json()
            missing = await http.get("/api/bridges/nope")
    finally:
        writer.close()
    assert [b["name"] for b in listed] == ["lines", "json"]
    assert listed[1]["port"] > 0 and listed[1]["room"] == "tcp:json"  # port 0: a free one
    assert one["port"] == port and one["room"] == "plant" and one["direction"] == "both"
    assert one["clients"] == 1 and one["clients_total"] == 1
    assert one["frames_in"] == 2 and one["bytes_in"] == 8
    assert one["frames_out"] == 1 and one["bytes_out"] == 5
    assert one["drops"] == 0 and one["errors"] == {}
    assert missing.status_code == 404
    assert missing.json()["detail"]["code"] == "not_found"
    # The same snapshot, pushed to the dashboard's room.
    while True:
        frame = await ws.wait_for("message", room="$bridges")
        if frame["data"].get("event") == "stats":
            break
    stats = {b["name"]: b for b in frame["data"]["bridges"]}
    assert stats["lines"]["frames_in"] == 2 and stats["json"]["direction"] == "in"


# -- CLI helpers ---------------------------------------------------------------------------


async def test_cli_tail_and_tcp_send_from_two_terminals(hub_server):
    running = await hub_server(bridges=[{"name": "dev", "port": unused_port(), "room": "dev"}])
    port = running.hub.bridges["dev"].port
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        "tail",
        "dev",
        "--url",
        running.ws,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None and tail.stdout is not None
        line = await asyncio.wait_for(tail.stderr.readline(), 15 * FACTOR)
        assert line.startswith(b"joined dev")
        # Terminal two: a device typing lines; what the room says back is printed.
        send = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wirehub",
            "tcp-send",
            f"127.0.0.1:{port}",
            "--wait",
            "5",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert send.stdin is not None and send.stdout is not None
        send.stdin.write(b"temp 21.5\n")
        await send.stdin.drain()
        printed = orjson.loads(await asyncio.wait_for(tail.stdout.readline(), 15 * FACTOR))
        assert printed["data"] == "temp 21.5" and printed["from"].startswith("tcp:dev:127.0.0.1:")
        await running.hub.publish("dev", "ack 21.5")
        assert await asyncio.wait_for(send.stdout.readline(), 15 * FACTOR) == b"ack 21.5\n"
        send.stdin.close()
        await running.hub.bridges["dev"].stop(1.0)  # the server closes: tcp-send ends
        assert await asyncio.wait_for(send.wait(), 15 * FACTOR) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            tail.terminate()
        await tail.wait()
