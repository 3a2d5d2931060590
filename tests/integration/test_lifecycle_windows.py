"""``wirehub serve`` around the hub's start and stop, seen from outside (issue 14).

A real ``wirehub serve`` subprocess with a supervised service that holds the
window open until the test lets it go (a gate file): the HTTP port is taken
before any service starts, it answers while the hub starts (``/healthz`` 200,
``/readyz`` and the WebSocket handshake 503) and while it drains on shutdown,
and the shutdown summary counts only WebSockets that really did not close.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support import FACTOR, TIMEOUT, drain_output, open_client, spawn_hub, unused_port

#: A backend that is ready only once ``<dir>/go`` exists, and on SIGTERM exits
#: only once ``<dir>/stop`` exists: the test opens and closes each window.
GATED = """
import pathlib, signal, sys, time
gates = pathlib.Path(sys.argv[1])
def term(*_):
    print("stopping", flush=True)
    while not (gates / "stop").exists():
        time.sleep(0.02)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
(gates / "started").write_text("x")
print("waiting for the gate", flush=True)
while not (gates / "go").exists():
    time.sleep(0.02)
print("backend ready", flush=True)
while True:
    time.sleep(3600)
"""


def gated_config(tmp_path: Path) -> Path:
    (tmp_path / "gated.py").write_text(GATED)
    config = tmp_path / "hub.toml"
    config.write_text(
        "stats_interval = 0\n"
        "[[services]]\n"
        'name = "backend"\n'
        f"command = [{str(sys.executable)!r}, {str(tmp_path / 'gated.py')!r}, {str(tmp_path)!r}]\n"
        'ready = {log = "backend ready"}\n'
        "ready_timeout = 60\n"
        "stop_timeout = 60\n"
    )
    return config


class Serve:
    """``wirehub serve`` whose merged output a thread collects line by line."""

    def __init__(self, config: Path | None, port: int) -> None:
        args = [sys.executable, "-m", "wirehub", "serve", "--port", str(port)]
        if config is not None:
            args += ["--config", str(config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.port = port
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout * FACTOR
        regex = re.compile(pattern)
        with self._cond:
            while not any(regex.search(line) for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._pump.is_alive():
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.text()}")
                self._cond.wait(min(left, 0.5))

    async def line(self, pattern: str, timeout: float = 3 * TIMEOUT) -> None:
        await asyncio.to_thread(self._wait, pattern, timeout)

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)

    async def exit_code(self) -> int:
        return await asyncio.to_thread(self.proc.wait, 30 * FACTOR)

    def cleanup(self, gates: Path | None = None) -> None:
        """Open every gate (the backend may exit), then end the hub if it still runs."""
        if gates is not None:
            for name in ("go", "stop"):
                (gates / name).write_text("x")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10 * FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)
        self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def handshake_status(url: str) -> int:
    """The HTTP status of a WebSocket handshake (101 when it is accepted)."""
    try:
        async with connect(url, open_timeout=TIMEOUT):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_busy_http_port_fails_before_any_service_starts(tmp_path):
    config = gated_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = Serve(config, port)
        try:
            code = await serve.exit_code()
        finally:
            serve.cleanup()
    output = serve.text()
    assert code == 1, output
    assert f"start failed: HTTP cannot listen on 127.0.0.1:{port}: Address already in use" in (
        output
    )
    assert "Traceback" not in output
    # The backend was never started (it writes this file first thing).
    assert not (tmp_path / "started").exists()
    assert "backend" not in output


async def test_readyz_and_the_handshake_answer_503_while_starting_and_draining(tmp_path):
    serve = Serve(gated_config(tmp_path), unused_port())
    base, ws = f"http://127.0.0.1:{serve.port}", f"ws://127.0.0.1:{serve.port}/ws"
    try:
        # -- the start window: listening, the backend not ready yet --------------
        # The backend cannot be ready before the test writes "go": the hub is starting.
        await serve.line(r"listening on http://127\.0\.0\.1:\d+ while the hub starts")
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["hub"] is False
            assert await handshake_status(ws) == 503

            (tmp_path / "go").write_text("x")
            await serve.line("Uvicorn running on")
            assert (await http.get("/readyz")).status_code == 200
            client = await open_client(ws, "early-bird")

            # -- the drain window: clients told 1001, the backend still stopping --
            serve.proc.send_signal(signal.SIGTERM)
            assert await client.closed() == (1001, "hub shutting down")
            await client.close()
            # The hub now waits for the backend, which cannot exit before "stop".
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["hub"] is False
            assert await handshake_status(ws) == 503

        (tmp_path / "stop").write_text("x")
        code = await serve.exit_code()
    finally:
        serve.cleanup(gates=tmp_path)
    output = serve.text()
    assert code == 0, output
    assert "Traceback" not in output
    assert port_is_free(serve.port)


async def test_only_websockets_that_did_not_close_are_reported_dropped():
    # close_timeout: how long the polite clients get for their close handshake.
    close_timeout = str(1.0 * FACTOR)
    hp = spawn_hub(
        env={
            "WIREHUB_SHUTDOWN__DRAIN_TIMEOUT": "0.5",
            "WIREHUB_LIMITS__CLOSE_TIMEOUT": close_timeout,
        }
    )
    try:
        polite = [await open_client(hp.ws, f"polite-{i}") for i in range(3)]
        # One client that never reads, behind socket buffers filled by another.
        stuck = await open_client(hp.ws, "stuck", max_queue=1)
        await stuck.request("join", room="r")
        pub = await open_client(hp.ws, "pub")
        await pub.request("join", room="r")
        for _ in range(300):
            await pub.send(type="publish", room="r", data="y" * 16_000)
        await pub.request("ping")
        hp.signal(signal.SIGTERM)
        for client in polite:
            assert (await client.closed())[0] == 1001
        returncode = await asyncio.to_thread(hp.wait, 20)
        stuck.ws.transport.abort()
        for client in (*polite, pub):
            await client.close()
    finally:
        hp.cleanup()
    output = drain_output(hp)
    assert returncode == 0, output
    # The polite clients and the publisher took their 1001; only "stuck" is dropped.
    assert "dropped 1 WebSocket connections that did not close in time" in output, output


@pytest.mark.parametrize("clients", [0, 2])
async def test_a_clean_shutdown_reports_nothing_dropped(clients):
    hp = spawn_hub()
    try:
        opened = [await open_client(hp.ws, f"c{i}") for i in range(clients)]
        hp.signal(signal.SIGTERM)
        for client in opened:
            assert (await client.closed())[0] == 1001
            await client.close()
        returncode = await asyncio.to_thread(hp.wait)
    finally:
        hp.cleanup()
    output = drain_output(hp)
    assert returncode == 0, output
    assert f"{clients} clients closed" in output
    assert "WebSocket connections that did not close" not in output, output
