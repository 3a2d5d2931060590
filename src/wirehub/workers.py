"""``wirehub serve --workers N``: N hub processes on one port, one hub to their clients.

One Python process is one core. ``--workers N`` runs N full hubs
(:class:`~wirehub.server.HubServer`, each with its own event loop) that share
rooms, presence, history and direct messages through Redis, exactly like N
nodes behind a load balancer (docs/deploy.md) — without the balancer:

1. The **supervisor** (this process) checks what the workers need (the
   ``redis`` extra), and with no ``redis.url`` starts a private
   ``redis-server`` (src/wirehub/privredis.py) before anything else.
2. It binds the HTTP port once. Each worker inherits the listening socket
   (as with uvicorn's ``--workers``), so the kernel hands each new connection
   to whichever worker accepts first, and a worker that dies takes nothing
   from the port: the others go on accepting.
3. It starts the workers (``python -m wirehub.workers``), each in its own
   session. Each asks the kernel for SIGTERM when the supervisor dies
   (``PR_SET_PDEATHSIG``), and the private Redis's process group is given to
   the services watchdog (src/wirehub/services/reaper.py): a supervisor killed
   with SIGKILL takes its workers and its Redis with it.
4. Once every worker's hub is up it logs ``Uvicorn running on ...`` (what
   ``wirehub serve`` logs). A worker that exits while the hub runs is
   restarted with backoff; its clients reconnect to the others meanwhile and
   recover what they missed with ``since``.
5. SIGTERM/SIGINT: SIGTERM to every worker (each refuses new clients and closes
   its own with ``1001`` after flushing them, then stops), SIGKILL to one still
   running after ``server.graceful_timeout + shutdown.drain_timeout``; then the
   private Redis stops, and the supervisor exits 0.

Supervised services and TCP bridges run in worker 0 only (a TCP port cannot be
bound N times, and one Java server is enough); their rooms reach every
worker's clients through Redis like any room. Jobs run in the worker whose
client submitted them (``jobs.runner = "celery"`` shares them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wirehub.backoff import backoff
from wirehub.errors import WirehubError
from wirehub.extras import require as require_extra
from wirehub.privredis import PrivateRedis
from wirehub.services.reaper import Reaper
from wirehub.settings import Settings

__all__ = ["Supervisor", "main", "serve_workers"]

logger = logging.getLogger("wirehub.workers")

#: A worker up for this long resets its restart backoff.
STABLE_AFTER = 10.0
#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    delays: Iterator[float] | None = None  # the restart backoff, made on first restart


class Supervisor:
    """The parent of ``--workers N``: Redis, the port, the workers, their restarts and stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int,
        config: Path | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.count = workers
        self.config = config
        self.host = host or settings.server.host
        self.port = settings.server.port if port is None else port
        self.redis: PrivateRedis | None = None
        self.reaper = Reaper()
        self.sock: socket.socket | None = None
        self.workers = [Worker(i) for i in range(workers)]
        self._stopping = asyncio.Event()
        self._failed = False

    # -- the whole run ------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop; the exit code (1 when the start failed)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            if await self._start():
                url = self.settings.redis_url or (self.redis.url if self.redis else "")
                logger.info(
                    "Uvicorn running on http://%s (%d workers sharing %s; Press CTRL+C to quit)",
                    _address(*self.sock.getsockname()[:2]) if self.sock else "?",
                    self.count,
                    _redact(url),
                )
                watchers = [loop.create_task(self._watch(w)) for w in self.workers]
                await self._stopping.wait()
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            await self._stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 1 if self._failed else 0

    def _on_signal(self, sig: int) -> None:
        if not self._stopping.is_set():
            logger.info("%s: stopping %d workers", signal.Signals(sig).name, self.count)
        self._stopping.set()

    async def _start(self) -> bool:
        # 0. What every worker needs, checked once here: one line, exit 1.
        try:
            require_extra("redis", "--workers (the workers share their rooms through Redis)")
        except WirehubError as exc:
            logger.error("start failed: %s", exc)
            self._failed = True
            return False
        await self.reaper.start()
        # 1. The private Redis first, so a worker never starts without its broker.
        if not self.settings.redis_url:
            self.redis = PrivateRedis()
            try:
                await self.redis.start()
            except WirehubError as exc:
                logger.error("start failed: %s", exc)
                self._failed = True
                return False
            assert self.redis.pid is not None
            self.reaper.register(
                self.redis.pid, service="redis-server", stop_signal=signal.SIGTERM, stop_timeout=5
            )
        # 2. The port, bound once: a busy port fails before any worker starts.
        try:
            self.sock = _bind(self.host, self.port)
        except OSError as exc:
            logger.error(
                "start failed: HTTP cannot listen on %s: %s",
                _address(self.host, self.port),
                exc.strerror or exc,
            )
            self._failed = True
            return False
        # 3. The workers, all at once; the start is over when every hub is up.
        for worker in self.workers:
            await self._spawn(worker)
        waits = {asyncio.ensure_future(self._until_ready(w)) for w in self.workers}
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            pending = waits
            while pending:
                done, pending = await asyncio.wait(
                    pending | {stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= {stopping}
                if stopping in done:
                    return False
                if not all(t.result() for t in done if t is not stopping):
                    self._failed = True
                    return False
        finally:
            stopping.cancel()
            for task in waits:
                task.cancel()
        return True

    async def _until_ready(self, worker: Worker) -> bool:
        """True once the worker's hub is up; False if it exited first."""
        assert worker.proc is not None
        ready = asyncio.ensure_future(worker.ready.wait())
        exited = asyncio.ensure_future(worker.proc.wait())
        try:
            await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if worker.ready.is_set():
            exited.cancel()
            return True
        logger.error(
            "start failed: worker %d exited with %s before its hub started",
            worker.index,
            worker.proc.returncode,
        )
        return False

    # -- workers ---------------------------------------------------------------------------

    async def _spawn(self, worker: Worker) -> None:
        assert self.sock is not None
        ready_r, ready_w = os.pipe()
        args = [sys.executable, "-m", "wirehub.workers", "--fd", str(self.sock.fileno())]
        args += ["--index", str(worker.index), "--ready-fd", str(ready_w)]
        args += ["--host", self.host, "--port", str(self.sock.getsockname()[1])]
        args += ["--parent", str(os.getpid())]
        if self.config is not None:
            args += ["--config", str(self.config)]
        env = dict(os.environ)
        if self.redis is not None:
            env["WIREHUB_REDIS_URL"] = self.redis.url
        worker.ready = asyncio.Event()
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(self.sock.fileno(), ready_w),
                env=env,
                # Its own session: the supervisor decides when it stops (Ctrl-C
                # reaches the supervisor only), the watchdog if the supervisor dies.
                start_new_session=True,
            )
        finally:
            os.close(ready_w)
        worker.started_at = time.monotonic()
        self._read_ready(ready_r, worker)

    def _read_ready(self, fd: int, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        pid = worker.proc.pid if worker.proc else 0

        def readable() -> None:
            try:
                data = os.read(fd, 64)
            except OSError:
                data = b""
            if data.startswith(b"ready"):
                logger.info("worker %d pid %d ready", worker.index, pid)
                worker.ready.set()
            if not data or worker.ready.is_set():
                loop.remove_reader(fd)
                os.close(fd)

        loop.add_reader(fd, readable)

    async def _watch(self, worker: Worker) -> None:
        """Restart the worker whenever it exits while the hub runs."""
        while not self._stopping.is_set():
            assert worker.proc is not None
            code = await worker.proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - worker.started_at > STABLE_AFTER or worker.delays is None:
                worker.delays = backoff(initial=0.5, cap=10.0, jitter=0.5)
            delay = next(worker.delays)
            logger.warning(
                "worker %d pid %d exited with %s; restarting it in %.1f s",
                worker.index,
                worker.proc.pid,
                code if code >= 0 else signal.Signals(-code).name,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._spawn(worker)

    # -- stop --------------------------------------------------------------------------------

    def _stop_timeout(self) -> float:
        return self.settings.server.graceful_timeout + self.settings.shutdown.drain_timeout + 5.0

    async def _stop(self) -> None:
        """Workers first (each says 1001 to its clients), then the port, Redis, the watchdog."""
        # 1. SIGTERM every worker; each runs wirehub serve's shutdown order.
        running = [w.proc for w in self.workers if w.proc and w.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        # 2. Wait for them, SIGKILL (the whole group) what outlives the deadline.
        if running:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(p.wait() for p in running)), self._stop_timeout()
                )
            except TimeoutError:
                for proc in running:
                    if proc.returncode is None:
                        logger.warning("worker pid %d did not stop in time: SIGKILL", proc.pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.gather(*(p.wait() for p in running))
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        # 3. The private Redis last: the workers used it until they were gone.
        if self.redis is not None:
            pid = self.redis.pid
            await self.redis.stop()
            if pid is not None:
                self.reaper.unregister(pid)
        await self.reaper.close()
        logger.info("stopped %d workers", len(running))


def serve_workers(
    settings: Settings,
    *,
    workers: int,
    config: Path | None = None,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run the supervisor to the end; the process exit code."""
    supervisor = Supervisor(settings, workers=workers, config=config, host=host, port=port)
    return asyncio.run(supervisor.run())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _address(host: str | None, port: int) -> str:
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


# -- one worker ---------------------------------------------------------------------------


def _worker(argv: list[str]) -> int:
    """One worker: ``wirehub serve``'s HubServer on the inherited socket."""
    from wirehub.log import configure
    from wirehub.server import build_server
    from wirehub.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m wirehub.workers")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)

    settings = load_settings(args.config)
    if args.index != 0:
        # Services and TCP bridges are worker 0's (one TCP port, one Java server).
        settings = settings.model_copy(update={"services": [], "bridges": []})
    configure(settings.server.log_level)
    sock = socket.socket(fileno=args.fd)
    try:
        server = build_server(settings, host=args.host, port=args.port)
    except WirehubError as exc:
        logger.error("worker %d: %s", args.index, exc)
        return 1

    startup = server.startup

    async def startup_then_tell(sockets: list[socket.socket] | None = None) -> None:
        # HubServer.started turns true once the hub is up and serving.
        try:
            await startup(sockets)
            if server.started:
                with contextlib.suppress(OSError):
                    os.write(args.ready_fd, b"ready\n")
        finally:
            os.close(args.ready_fd)

    server.startup = startup_then_tell  # type: ignore[method-assign]
    # "Uvicorn running on" is the supervisor's line, once every worker is up.
    server._log_started_message = lambda listeners: None  # type: ignore[method-assign]
    server.run(sockets=[sock])
    return 1 if server.failed else 0


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (``PR_SET_PDEATHSIG``).

    The supervisor forks from its main thread, which lives as long as it does,
    so the kernel's parent-death signal is exact; the worker then stops as on
    any SIGTERM (its clients get 1001). Without prctl (not Linux) a worker
    outlives a killed supervisor until its own clients and port go idle.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        logger.warning("cannot ask to stop with the supervisor (no prctl)")
    if os.getppid() != parent:
        sys.exit(0)  # it died before we asked


def main(argv: list[str] | None = None) -> int:
    return _worker(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
