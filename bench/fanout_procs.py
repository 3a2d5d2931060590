"""The processes bench/fanout.py runs: servers under test, load generators, redis-server.

Every process is a real subprocess on a free 127.0.0.1 port. CPU time comes from
psutil (user + system) read around each measured phase, so "CPU µs per delivery"
holds even on a shared machine. With pinning on (the default on a machine with
2+ cores) the servers run on the first core and the load generators, redis-server
and this script on the others (``os.sched_setaffinity`` in the child before it
execs, so every thread it starts inherits it): server and clients then never
take CPU from each other, and a saturated load-generator core is visible in the
loadgen utilisation the report prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

__all__ = [
    "BENCH",
    "PYTHON",
    "ROOT",
    "Pinning",
    "Redis",
    "Server",
    "SpySession",
    "Worker",
    "free_port",
]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable

WIREHUB_CONFIG = """
# bench/fanout.py: wirehub settings for the fan-out benchmark.
stats_interval = 0
demo = false
{redis}
[server]
log_level = "warning"

[limits]
# Every load generator connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
# Publishers send as fast as the hub acks: no per-connection frame rate.
rate = 0
# Scenario 1 publishes as fast as acks come back; acks come once a message is
# queued, not delivered, so a subscriber's queue may hold the whole run.
queue_max_messages = {queue_max_messages}
queue_max_bytes = {queue_max_bytes}
"""

#: Server kind -> the command after the interpreter (``{port}`` filled in).
BASELINES = {
    "naive": ["bench/baselines/naive_fastapi.py"],
    "raw": ["bench/baselines/raw_websockets.py"],
    "picows": ["bench/baselines/raw_picows.py"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pinning:
    """Which cores the servers get and which the load generators get (``None``: no pinning)."""

    def __init__(self, enabled: bool) -> None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.enabled = enabled and len(cores) >= 2
        self.server: set[int] | None = {cores[0]} if self.enabled else None
        self.loadgen: set[int] | None = set(cores[1:]) if self.enabled else None

    def describe(self) -> str:
        if not self.enabled:
            return "no core pinning (--no-pin, or fewer than 2 cores)"
        return (
            f"servers pinned to core(s) {sorted(self.server or ())}, load generators, "
            f"redis-server and this script to core(s) {sorted(self.loadgen or ())}"
        )

    def pin_self(self) -> None:
        if self.loadgen is not None:
            os.sched_setaffinity(0, self.loadgen)

    @staticmethod
    def preexec(cores: set[int] | None) -> Any:
        """A ``preexec_fn`` pinning the child before exec (``None`` when not pinning)."""
        if cores is None:
            return None
        return lambda: os.sched_setaffinity(0, cores)


async def spawn(
    cmd: list[str], cores: set[int] | None, **kwargs: Any
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, preexec_fn=Pinning.preexec(cores), **kwargs
    )


class Server:
    """One server under test, as a subprocess with its log in ``workdir``."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        pinning: Pinning,
        *,
        queue_max_messages: int,
        queue_max_bytes: int,
        redis_url: str | None = None,
        redis_prefix: str = "wirehub",
        profile_dir: Path | None = None,
    ) -> None:
        self.kind = kind
        self.pinning = pinning
        self.port = free_port()
        self.log_path = workdir / f"{kind}-{self.port}.log"
        if kind.startswith("wirehub"):
            config = workdir / f"wirehub-{self.port}.toml"
            redis = f'redis_url = "{redis_url}"\n[redis]\nprefix = "{redis_prefix}"\n'
            config.write_text(
                WIREHUB_CONFIG.format(
                    queue_max_messages=queue_max_messages,
                    queue_max_bytes=queue_max_bytes,
                    redis=redis if redis_url else "",
                )
            )
            self.cmd = [PYTHON, "-m", "wirehub", "serve", "--config", str(config)]
            self.cmd += ["--port", str(self.port)]
        else:
            self.cmd = [PYTHON, *BASELINES[kind], "--port", str(self.port)]
        self.profile_path: Path | None = None
        if profile_dir is not None:
            self.profile_path = profile_dir / f"{kind}-{self.port}.prof"
            self.cmd[1:1] = [str(BENCH / "cpu_profile.py"), str(self.profile_path)]
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    async def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("wb")
        self.proc = await spawn(
            self.cmd,
            self.pinning.server,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout}s")

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far."""
        times = self.ps.cpu_times()  # type: ignore[union-attr]
        return times.user, times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss  # type: ignore[union-attr]

    def log_count(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    async def hub_metrics(self) -> dict[str, float]:
        """wirehub's /metrics samples by name and labels ({} for baselines, or unreadable)."""
        if not self.kind.startswith("wirehub"):
            return {}
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.HTTPError:
            return {}  # no figure rather than no phase
        samples = {}
        for line in text.splitlines():
            if line.startswith("wirehub_"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples

    def log_times(self, needle: str) -> list[float]:
        """When the server logged each line holding ``needle`` (epoch seconds, ms precision)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        times = []
        for line in lines:
            if needle in line:
                with contextlib.suppress(ValueError):
                    stamp, _, millis = line[:23].partition(",")
                    at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
                    times.append(at + int(millis) / 1000)
        return times

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Worker:
    """A bench/loadgen.py subprocess speaking JSON lines, with its CPU time readable."""

    def __init__(self, args: list[str], pinning: Pinning) -> None:
        self.args = args
        self.pinning = pinning
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._last_cpu = (0.0, 0.0)

    async def start(self) -> None:
        self.proc = await spawn(
            [PYTHON, str(BENCH / "loadgen.py"), *self.args],
            self.pinning.loadgen,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.ps = psutil.Process(self.proc.pid)
        self._pump = asyncio.ensure_future(self._read())

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far; once the process is gone, the last reading."""
        with contextlib.suppress(psutil.Error):
            times = self.ps.cpu_times()  # type: ignore[union-attr]
            self._last_cpu = (times.user, times.system)
        return self._last_cpu

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                await self.events.put(json.loads(line))
        await self.events.put({"event": "exit"})

    async def expect(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(
                self.events.get(), max(0.01, deadline - time.monotonic())
            )
            if event["event"] == name:
                return event
            if event["event"] == "exit":
                raise RuntimeError(f"loadgen {self.args[0]} exited before '{name}'")

    def tell(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(word.encode() + b"\n")

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 2)


class Redis:
    """A private redis-server on a free port (no persistence), for the cross-node scenario."""

    def __init__(self, pinning: Pinning) -> None:
        self.pinning = pinning
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = await spawn(
            [binary, *("--port", str(self.port), "--bind", "127.0.0.1"), "--save", ""],
            self.pinning.loadgen,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                pong = await reader.readline()
                writer.close()
                if pong.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far."""
        times = self.ps.cpu_times()  # type: ignore[union-attr]
        return times.user, times.system

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class SpySession:
    """``py-spy record`` attached to one server for one measured phase (raw collapsed stacks)."""

    def __init__(self, server: Server, out: Path, pinning: Pinning, rate: int = 500) -> None:
        self.cmd = [
            shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy"),
            *("record", "--pid", str(server.proc.pid), "--format", "raw"),  # type: ignore[union-attr]
            *("--output", str(out), "--rate", str(rate), "--nonblocking", "--function"),
        ]
        self.out = out
        self.pinning = pinning
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Future[bytes] | None = None

    async def start(self) -> None:
        self.proc = await spawn(
            self.cmd,
            self.pinning.loadgen,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        # Ready once it says it samples ("py-spy> Sampling process 200 times a second...").
        while line := await asyncio.wait_for(self.proc.stdout.readline(), 20):
            if b"Sampling process" in line:
                break
        self._drain = asyncio.ensure_future(self.proc.stdout.read())

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 5)
