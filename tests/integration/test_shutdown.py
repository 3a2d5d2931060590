"""Graceful shutdown of a real ``wirehub serve`` process and of an in-process hub."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys

import pytest

from support import HubProcess, WSClient, drain_output, open_client, spawn_hub, start_hub


def port_is_free(port: int) -> bool:
    """No socket listens on the port any more (TIME_WAIT leftovers are fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def stuck_reader(hp: HubProcess) -> tuple[WSClient, WSClient]:
    """A client that never reads, with the socket buffers towards it filled by another."""
    stuck = await open_client(hp.ws, "stuck", max_queue=1)
    await stuck.request("join", room="r")
    pub = await open_client(hp.ws, "pub")
    await pub.request("join", room="r")
    for _ in range(300):
        await pub.send(type="publish", room="r", data="y" * 16_000)
    await pub.request("ping")
    return stuck, pub


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0(sig):
    hp = spawn_hub()
    try:
        a = await open_client(hp.ws, "a")
        b = await open_client(hp.ws, "b")
        await a.request("join", room="r")
        await b.request("join", room="r")
        hp.signal(sig)
        for client in (a, b):
            code, reason = await client.closed()
            assert (code, reason) == (1001, "hub shutting down")
        returncode = await asyncio.to_thread(hp.wait)
        for client in (a, b):
            await client.close()
    finally:
        hp.cleanup()
    output = drain_output(hp)
    assert returncode == 0, output
    assert "2 clients closed" in output
    assert "Traceback" not in output
    assert port_is_free(hp.port)


async def test_a_client_that_does_not_read_does_not_block_shutdown():
    hp = spawn_hub(
        env={"WIREHUB_SHUTDOWN__DRAIN_TIMEOUT": "0.5", "WIREHUB_LIMITS__CLOSE_TIMEOUT": "0.5"}
    )
    try:
        stuck, pub = await stuck_reader(hp)
        hp.signal(signal.SIGTERM)
        started = asyncio.get_running_loop().time()
        returncode = await asyncio.to_thread(hp.wait, 20)
        took = asyncio.get_running_loop().time() - started
        stuck.ws.transport.abort()
        await pub.close()
    finally:
        hp.cleanup()
    output = drain_output(hp)
    assert returncode == 0, output
    assert "Traceback" not in output
    assert took < 8, f"shutdown took {took:.1f}s"  # drain 0.5 + close 0.5, not uvicorn's 10 s
    assert port_is_free(hp.port)


async def test_in_process_stop_leaves_no_task_pending():
    running = await start_hub()
    clients = [await open_client(running.ws, f"c{i}") for i in range(5)]
    for client in clients:
        await client.request("join", room="r")
    await running.stop()
    for client in clients:
        code, _ = await client.closed()
        assert code == 1001
        await client.close()

    await asyncio.sleep(0)  # let finished tasks be collected
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert leftover == [], leftover
    assert port_is_free(running.port)
    assert running.hub.node.clients == {}


async def test_hub_process_runs_with_a_config_file(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text("stats_interval = 0\n[limits]\nmax_rooms_per_connection = 2\n")
    hp = spawn_hub(config)
    try:
        client = await open_client(hp.ws)
        await client.request("join", room="a")
        await client.request("join", room="b")
        error = await client.request("join", room="c")
        assert error["code"] == "limit_exceeded"
        hp.signal(signal.SIGTERM)
        assert await asyncio.to_thread(hp.wait) == 0
        await client.close()
    finally:
        hp.cleanup()


async def test_a_failed_start_is_one_clear_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "hub.toml"
        config.write_text(f'[[bridges]]\nname = "plc"\nport = {port}\nroom = "plc"\n')
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "wirehub", "serve", "--port", "0", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"start failed: bridge 'plc' cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_second_signal_during_shutdown_still_exits_cleanly():
    hp = spawn_hub(
        env={"WIREHUB_SHUTDOWN__DRAIN_TIMEOUT": "1", "WIREHUB_LIMITS__CLOSE_TIMEOUT": "1"}
    )
    try:
        # A client that never reads keeps the shutdown busy draining it...
        stuck, pub = await stuck_reader(hp)
        watcher = await open_client(hp.ws, "watcher")
        hp.signal(signal.SIGINT)
        # ...so the second Ctrl-C lands while the hub is stopping (uvicorn's
        # "force exit", which skips its own lifespan shutdown).
        code, _ = await watcher.closed()
        assert code == 1001
        hp.signal(signal.SIGINT)
        returncode = await asyncio.to_thread(hp.wait)
        stuck.ws.transport.abort()
        for client in (pub, watcher):
            await client.close()
    finally:
        hp.cleanup()
    output = hp.output()
    assert returncode == 0, output
    assert "Traceback" not in output and "CancelledError" not in output, output
