"""A private ``redis-server`` for ``wirehub serve --workers N`` when no ``redis.url`` is set.

N worker processes share rooms, presence, history and direct messages through
Redis, exactly as N nodes do (docs/deploy.md). Without a configured Redis the
supervisor starts its own: a ``redis-server`` listening on a unix socket only
(no TCP port), in a temp directory only this user can enter, with persistence
off (``--save "" --appendonly no``: what it holds lives as long as the hub).
The directory records its owner; the next start removes those whose owner
died with SIGKILL (:func:`sweep_stale`).

It runs in its own session and its process group is given to the services
watchdog (src/wirehub/services/reaper.py), so it dies with the hub even when
the hub is killed with SIGKILL; a normal stop is SIGTERM, SIGKILL after
``stop_timeout``, then the directory is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from wirehub.errors import ConfigError, WirehubError
from wirehub.services.watchdog import is_running, proc_start

__all__ = ["PREFIX", "PrivateRedis", "sweep_stale"]

logger = logging.getLogger("wirehub.workers")

#: The temp directories' prefix, in ``tempfile.gettempdir()``.
PREFIX = "wirehub-redis-"


def sweep_stale(answers: Callable[[Path], bool]) -> int:
    """Remove the directories that hubs killed with SIGKILL left behind; how many.

    One is stale when its ``owner`` (pid and start time) is gone and nothing
    answers on its socket (the watchdog stops the server itself). Only this
    user's directories are looked at.
    """
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
            pid, start = (int(x) for x in (path / "owner").read_text().split())
        except (OSError, ValueError):
            continue  # not ours, or its owner is still writing it
        if is_running((pid, start)) or answers(path / "redis.sock"):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


class PrivateRedis:
    """One ``redis-server`` on a unix socket in a private temp directory."""

    def __init__(
        self,
        *,
        binary: str = "redis-server",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.dir: Path | None = None
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def socket_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "redis.sock"

    @property
    def url(self) -> str:
        """What the workers get as ``WIREHUB_REDIS_URL``."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def start(self) -> None:
        """Start it and wait until it answers PING; WirehubError (with its log) if it does not."""
        path = shutil.which(self.binary)
        if path is None:
            raise ConfigError(
                f"--workers without redis.url starts a private {self.binary}, and none is on "
                "PATH: install Redis (apt-get install redis-server) or set redis.url",
                binary=self.binary,
            )
        await asyncio.to_thread(sweep_stale, self._pong_at)
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))  # mode 0700
        started = proc_start(os.getpid())
        (self.dir / "owner").write_text(f"{os.getpid()} {started}\n")
        log = self.dir / "redis.log"
        args = [path, "--port", "0", "--unixsocket", str(self.socket_path)]
        args += ["--unixsocketperm", "700", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--logfile", str(log), "--databases", "1"]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own session: Ctrl-C reaches the supervisor only, which stops it last.
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while not await asyncio.to_thread(self._pong):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                await self.stop()
                raise WirehubError(f"the private redis-server did not start: {tail.strip()}")
            await asyncio.sleep(0.02)
        logger.info("private redis-server pid %d on %s", self.proc.pid, self.url)

    def _pong(self) -> bool:
        return self._pong_at(self.socket_path)

    @staticmethod
    def _pong_at(path: Path) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    async def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout``; then the directory goes. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                logger.warning("private redis-server pid %d did not stop: SIGKILL", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
