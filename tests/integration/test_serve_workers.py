"""``wirehub serve --workers 2``: two hub processes on one port, one hub to their clients.

A real ``wirehub serve --workers 2`` subprocess (its private redis-server, its
two workers) and real clients, connected until some land on each worker (the
welcome frame names the node, whose id carries the worker's pid). What a user
would notice: rooms, presence, history and direct messages across workers; a
TCP bridge (worker 0's) reaching clients of both; a killed worker restarted
while its clients reconnect and recover; SIGTERM closing everyone with 1001 and
stopping the private Redis; a SIGKILL of the hub taking its workers and Redis
with it; a clear error without redis-server.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from process_support import ServerProcess
from redis_support import CI
from support import TIMEOUT, WSClient, open_client, unused_port
from wirehub.privredis import PrivateRedis, sweep_stale

# Under CI a missing redis-server fails these tests rather than skipping them (redis_support.py).
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not CI, reason="needs redis-server"
)

RUNNING = r"Uvicorn running on http://127\.0\.0\.1:\d+ \(2 workers"


def serve(tmp_path: Path, config: str = "", **env: str) -> tuple[ServerProcess, int]:
    port = unused_port()
    path = tmp_path / "hub.toml"
    path.write_text(config)
    args = [sys.executable, "-m", "wirehub", "serve", "--workers", "2", "--port", str(port)]
    args += ["--config", str(path)]
    server = ServerProcess.start(args, env={"WIREHUB_STATS_INTERVAL": "0", **env})
    try:
        server.wait_line(RUNNING)
    except BaseException:
        server.stop()
        raise
    return server, port


def pid_of(client: WSClient) -> int:
    """The worker's pid, from the node id in the welcome frame (``host-pid-random``)."""
    return int(str(client.welcome["node"]).rsplit("-", 2)[1])


async def one_per_worker(port: int, prefix: str) -> tuple[WSClient, WSClient]:
    """Connect until two clients are on different workers; close the others."""
    url = f"ws://127.0.0.1:{port}/ws"
    by_node: dict[str, WSClient] = {}
    extra: list[WSClient] = []
    for i in range(60):
        client = await open_client(url, f"{prefix}{i}")
        node = str(client.welcome["node"])
        if node in by_node:
            extra.append(client)
        else:
            by_node[node] = client
        if len(by_node) == 2:
            break
    for client in extra:
        await client.close()
    assert len(by_node) == 2, "60 connections all landed on one worker"
    first, second = by_node.values()
    return first, second


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait for every pid to end (a state, polled); those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if not gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


async def test_clients_of_two_workers_share_rooms_and_sigterm_closes_all_with_1001(tmp_path):
    server, port = serve(tmp_path)
    try:
        match = re.search(r"private redis-server pid (\d+) on unix://(\S+)", server.output())
        assert match, server.output()
        redis_pid, redis_socket = int(match[1]), match[2]
        assert await asyncio.to_thread(os.path.exists, redis_socket)
        assert server.count(r"worker \d pid \d+ ready") == 2

        a, b = await one_per_worker(port, "share")
        assert pid_of(a) != pid_of(b)
        await a.request("join", room="chat")
        joined = await b.request("join", room="chat")
        assert joined["members"] == sorted([a.client_id, b.client_id])  # presence across workers
        presence = await a.wait_for("presence", room="chat")
        assert presence["event"] == "join" and presence["client_id"] == b.client_id

        # The HTTP API (either worker answers) reaches clients of both.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            sent = await http.post("/api/rooms/chat/publish", json={"data": "from http"})
            assert sent.status_code == 200, sent.text
        for client in (a, b):
            message = await client.wait_for("message", room="chat", data="from http")
            assert message["offset"] == 1

        # A publish on one worker, delivered on the other, in one offset sequence.
        ack = await a.request("publish", room="chat", data="from a")
        assert ack["offset"] == 2
        assert (await b.wait_for("message", room="chat", data="from a"))["from"] == a.client_id

        # A direct message across workers.
        assert (await a.request("direct", to=b.client_id, data="psst"))["type"] != "error"
        direct = await b.wait_for("direct")
        assert direct["from"] == a.client_id and direct["data"] == "psst"

        # History: a newcomer (on either worker) recovers both messages.
        late = await open_client(f"ws://127.0.0.1:{port}/ws", "late")
        await late.send(type="join", room="chat", since=0, ref="j")
        replay = [await late.wait_for("message", room="chat") for _ in range(2)]
        assert [m["data"] for m in replay] == ["from http", "from a"]
        await late.close()

        # SIGTERM: every worker closes its own clients with 1001, then the Redis goes.
        server.signal(signal.SIGTERM)
        for client in (a, b):
            assert await client.closed() == (1001, "hub shutting down")
        assert server.wait() == 0
        assert gone(redis_pid)
        assert not await asyncio.to_thread(os.path.exists, os.path.dirname(redis_socket))
        output = server.output()
        assert "stopped 2 workers" in output
        assert "Traceback" not in output, output
    finally:
        server.stop()


async def test_a_killed_worker_is_restarted_and_its_clients_recover(tmp_path):
    server, port = serve(tmp_path)
    try:
        a, b = await one_per_worker(port, "kill")
        await a.request("join", room="feed")
        await b.request("join", room="feed")
        ack = await a.request("publish", room="feed", data=0)
        await b.wait_for("message", room="feed", data=0)

        victim = pid_of(b)
        os.kill(victim, signal.SIGKILL)
        code, _ = await b.closed()
        assert code is None  # no close frame: the process is gone
        # The other worker goes on; the supervisor restarts the dead one.
        for i in range(1, 4):
            await a.request("publish", room="feed", data=i)
        server.wait_line(rf"worker \d pid {victim} exited with SIGKILL; restarting it")
        server.wait_line(r"worker \d pid \d+ ready", count=3)

        # The client comes back (on whichever worker accepts) and recovers what it missed.
        back = await open_client(f"ws://127.0.0.1:{port}/ws", b.client_id)
        assert pid_of(back) != victim
        joined = await back.request("join", room="feed", since=ack["offset"])
        assert joined["recovered"] is True
        missed = [await back.wait_for("message", room="feed") for _ in range(3)]
        assert [m["data"] for m in missed] == [1, 2, 3]
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


async def test_a_tcp_bridge_runs_once_and_reaches_clients_of_both_workers(tmp_path):
    tcp_port = unused_port()
    config = f'[[bridges]]\nname = "sensors"\nport = {tcp_port}\nframing = "line"\n'
    server, port = serve(tmp_path, config)
    try:
        assert server.count(r"bridge sensors listening") == 1, server.output()
        a, b = await one_per_worker(port, "tcp")
        for client in (a, b):
            await client.request("join", room="tcp:sensors")
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(b"temp=21.5\n")
        await writer.drain()
        for client in (a, b):
            message = await client.wait_for("message", room="tcp:sensors")
            assert message["data"] == "temp=21.5"
        # ...and a WebSocket publish on either worker reaches the device.
        await b.request("publish", room="tcp:sensors", data="set=22")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"set=22\n"
        writer.close()
    finally:
        server.stop()


def test_sigkill_of_the_hub_takes_its_workers_and_private_redis_with_it(tmp_path):
    server, _port = serve(tmp_path)
    try:
        output = server.output()
        workers = [int(p) for p in re.findall(r"worker \d pid (\d+) ready", output)]
        found = re.search(r"private redis-server pid (\d+) on unix://(\S+)", output)
        assert found is not None and len(workers) == 2
        redis_pid, redis_dir = int(found[1]), Path(found[2]).parent
        server.proc.kill()  # no clean-up code runs in the supervisor
        server.proc.wait(TIMEOUT)
        # The workers get SIGTERM from the kernel (parent death), Redis from the watchdog.
        assert wait_gone([*workers, redis_pid], 6 * TIMEOUT) == []
        # Its directory stays until the next start sweeps it (the owner is dead).
        assert redis_dir.exists()
        assert sweep_stale(PrivateRedis._pong_at) >= 1
        assert not redis_dir.exists()
    finally:
        server.stop()


def test_without_redis_url_or_redis_server_the_start_fails_in_one_line(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    port = unused_port()
    args = [sys.executable, "-m", "wirehub", "serve", "--workers", "2", "--port", str(port)]
    server = ServerProcess.start(args, env={"PATH": str(bare)})
    try:
        assert server.wait() == 1
        output = server.output()
        assert "start failed: --workers without redis.url starts a private redis-server" in output
        assert "Traceback" not in output
        with pytest.raises(ConnectionRefusedError):  # nothing was left listening
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        server.stop()
