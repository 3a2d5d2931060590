"""Test harness: real uvicorn servers on free ports, real WebSocket clients.

Nothing here mocks the hub: servers run the same app as ``wirehub serve`` and
clients talk to them over loopback sockets. Waits are on readiness signals
(``server.started``, a log line, a frame), bounded by ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from wirehub.core.outbound import Outbound
from wirehub.hub import Hub
from wirehub.server import HubServer, http_protocol, ws_protocol
from wirehub.settings import Settings, load_settings
from wirehub.web.app import create_app

#: Multiply every wait on a slow machine: WIREHUB_TEST_TIMEOUT_FACTOR=3.
FACTOR = float(os.environ.get("WIREHUB_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5.0 * FACTOR


def _ephemeral_low() -> int | None:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


_EPHEMERAL_LOW = _ephemeral_low()
#: Ports below the kernel's ephemeral range, walked from a random start. A port that
#: ``bind(0)`` handed out sits in the ephemeral range, where any outgoing connection
#: (a client, a Redis call) can take it between the test closing its probe socket and
#: the server binding it: CI saw a bridge fail with "Address already in use" that way.
_PORTS: itertools.cycle[int] | None = None
if _EPHEMERAL_LOW is not None and _EPHEMERAL_LOW > 21000:
    _span = range(20000, _EPHEMERAL_LOW)
    _start = random.randrange(len(_span))
    _PORTS = itertools.cycle([*_span[_start:], *_span[:_start]])
_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def unused_port() -> int:
    """A loopback port no one holds, and one this test run has not handed out before."""
    if _PORTS is not None:
        for _ in range(2000):
            port = next(_PORTS)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningHub:
    hub: Hub
    server: HubServer
    port: int
    task: asyncio.Task[None]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30 * FACTOR)


async def start_hub(settings: Settings | None = None, **overrides: Any) -> RunningHub:
    """Run the standalone app on uvicorn in this event loop, on a free port."""
    if settings is None:
        overrides.setdefault("stats_interval", 0)
        settings = load_settings(None, **overrides)
    hub = Hub(settings)
    port = unused_port()
    config = uvicorn.Config(
        create_app(hub),
        host="127.0.0.1",
        port=port,
        http=http_protocol(settings, hub.node),
        ws=ws_protocol(settings, hub.node),
        ws_max_size=settings.server.ws_max_size,
        ws_per_message_deflate=settings.server.ws_per_message_deflate,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = HubServer(config, hub)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited before it started")
        await asyncio.sleep(0.01)
    return RunningHub(hub, server, port, task)


class WSClient:
    """A small test client: frames as dicts, replies matched by ``ref``."""

    _refs = itertools.count(1)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @property
    def client_id(self) -> str:
        return str(self.welcome["client_id"])

    async def send(self, **frame: Any) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self.buffer:
            return self.buffer.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout * FACTOR)
        return orjson.loads(raw)

    async def expect(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """The next frame must be of this type (and carry these fields)."""
        frame = await self.recv(timeout)
        assert frame.get("type") == kind, f"expected {kind}, got {frame}"
        for key, value in match.items():
            assert frame.get(key) == value, f"expected {key}={value!r} in {frame}"
        return frame

    async def wait_for(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """Skip frames until one of this type with these fields arrives."""
        deadline = asyncio.get_running_loop().time() + timeout * FACTOR
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {kind} {match} within {timeout}s")
            frame = await self.recv(left)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def request(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Send with a fresh ref; return the reply with that ref (others stay buffered)."""
        ref = f"r{next(self._refs)}"
        await self.send(type=kind, ref=ref, **fields)
        deadline = asyncio.get_running_loop().time() + timeout * FACTOR
        held: list[dict[str, Any]] = []
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"no reply to {kind} ref={ref}")
                raw = await asyncio.wait_for(self.ws.recv(), left)
                frame = orjson.loads(raw)
                if frame.get("ref") == ref:
                    return frame
                held.append(frame)
        finally:
            self.buffer.extend(held)

    async def no_frame(self, within: float = 0.3) -> None:
        """Assert that nothing arrives for ``within`` seconds."""
        assert not self.buffer, f"unexpected frames {self.buffer}"
        with contextlib.suppress(TimeoutError):
            raw = await asyncio.wait_for(self.ws.recv(), within)
            raise AssertionError(f"unexpected frame {raw!r}")

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for the server to close us; return (code, reason)."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout * FACTOR)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await self.ws.close()


async def open_client(url: str, client_id: str | None = None, **kwargs: Any) -> WSClient:
    target = url if client_id is None else f"{url}?client_id={client_id}"
    # max_queue=None: the client keeps reading even with frames left unread, so
    # its close handshake completes at teardown (a slow-consumer test sets it).
    kwargs.setdefault("max_queue", None)
    ws = await connect(target, open_timeout=TIMEOUT, max_size=2**24, **kwargs)

    client = WSClient(ws)
    client.welcome = await client.expect("welcome")
    return client


@dataclass
class HubProcess:
    """``wirehub serve`` as a real subprocess (signals, exit codes)."""

    proc: subprocess.Popen[bytes]
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout * FACTOR)

    def output(self) -> str:
        return "".join(self.lines)

    def cleanup(self) -> None:
        """Kill the process if it still runs and close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            drain_output(self)
            self.proc.stdout.close()


def spawn_hub(config: Path | None = None, *, env: dict[str, str] | None = None) -> HubProcess:
    """Start ``python -m wirehub serve`` on a free port; return once it listens."""
    port = unused_port()
    args = [sys.executable, "-m", "wirehub", "serve", "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
    hp = HubProcess(proc, port)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace")
        hp.lines.append(line)
        if "Uvicorn running on" in line:
            break
    else:
        proc.wait()
        proc.stdout.close()
        raise RuntimeError(f"hub exited with {proc.returncode}:\n{hp.output()}")
    return hp


def drain_output(hp: HubProcess) -> str:
    """After exit: collect the rest of the process output."""
    assert hp.proc.stdout is not None
    if not hp.proc.stdout.closed:
        hp.lines.extend(raw.decode(errors="replace") for raw in hp.proc.stdout)
    return hp.output()


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (after one collection)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def outbounds_in_cycles() -> list[Outbound]:
    """Messages only the garbage collector would free (look with :func:`collector_off` on)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, Outbound)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
