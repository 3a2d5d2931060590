"""One supervised external program: its state machine, its process group, its restarts.

States and transitions (every one is published to ``$services``)::

    starting ──ready probe──> ready ──exit──> exited ──policy──> backoff ──delay──> starting
       │  └─exit / timeout / cannot spawn──> exited (or failed) ┘        └─too many──> failed
       └──stop()──> stopping ──> stopped          ready ──stop()──> stopping ──> stopped

The program runs in its own session (``start_new_session=True``), so its process
group id is its pid: the stop signal, and SIGKILL after ``stop_timeout``, go to
the whole group and take a shell's or a start script's children with it.
The exit is watched with a pidfd (a thread as fallback), never through the
pipes: a grandchild that keeps stdout open cannot hide it. Each group is also
handed to the hub's :class:`~wirehub.services.reaper.Reaper`, whose watchdog
stops it if the hub is killed with SIGKILL.

One task (``_run``) owns the process; ``start``/``stop`` only ask it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from wirehub.backoff import backoff
from wirehub.core.pump import Pump
from wirehub.errors import ServiceError, WirehubError
from wirehub.services.logstream import LogLine, LogRing, PipeReader
from wirehub.services.probes import make_probe, wait_ready
from wirehub.services.reaper import Reaper
from wirehub.services.spec import ServiceSpec

__all__ = ["SERVICES_ROOM", "Service", "ServiceError", "ServiceState", "log_room"]

logger = logging.getLogger("wirehub.services")

#: System room with every state transition of every service.
SERVICES_ROOM = "$services"

#: Log lines waiting to be published, per service; beyond it lines are still
#: kept in the ring and logged, but not published (counted in ``lines_dropped``).
MAX_PENDING_LINES = 10_000

#: Seconds to wait for the pipes to reach EOF once the process group is gone.
PIPE_DRAIN_TIMEOUT = 1.0

Publish = Callable[[str, Any], Awaitable[Any]]


def log_room(name: str) -> str:
    """The room where a service's output lines are published."""
    return f"$service:{name}"


class ServiceState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"
    BACKOFF = "backoff"
    FAILED = "failed"


#: States in which a run task is alive and owns (or will own) a process.
ACTIVE = frozenset({ServiceState.STARTING, ServiceState.READY, ServiceState.BACKOFF})


class Service:
    """A supervised program. ``hub.services["name"]`` is one of these."""

    def __init__(
        self, spec: ServiceSpec, *, publish: Publish | None = None, reaper: Reaper | None = None
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.state = ServiceState.STOPPED
        self.pid: int | None = None
        #: Restarts done by the policy (not by API calls) since the hub started.
        self.restarts = 0
        self.exit_code: int | None = None
        #: Why the last run ended badly (cannot spawn, not ready in time, gave up...).
        self.last_error: str | None = None
        self.ready_since: float | None = None
        self.logs = LogRing(spec.log_lines)
        self.lines_dropped = 0
        self._publish = publish
        #: Keeps each process group where it outlives a SIGKILL of the hub (reaper.py).
        self._reaper = reaper
        self._started_mono: float | None = None
        self._ready_mono: float | None = None
        self._log_re = re.compile(spec.ready.log) if spec.ready.log is not None else None
        self._log_matched = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Settled when the current start attempt is ready (True) or failed (False).
        self._attempt: asyncio.Future[bool] | None = None
        #: State changes (pushed: never dropped, few) and log lines (offered:
        #: at most MAX_PENDING_LINES wait), published in order by one task. No
        #: time budget: while it publishes, the pipe readers wait, so a flood
        #: backs up into the program's pipe (it blocks) instead of being dropped.
        self._outbox: Pump[tuple[str, Any]] = Pump(
            self._publish_one,
            maxsize=MAX_PENDING_LINES,
            budget=math.inf,
            name=f"wirehub-service-{self.name}-pub",
        )
        self._client: httpx.AsyncClient | None = None

    # -- what handlers see -------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        """The configured ``base_url`` where the program serves HTTP (None if not set)."""
        return self.spec.base_url

    @property
    def client(self) -> httpx.AsyncClient:
        """A shared ``httpx.AsyncClient`` on ``base_url`` (closed when the hub stops)."""
        if self.spec.base_url is None:
            raise WirehubError(f"service '{self.name}' has no base_url")
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(base_url=self.spec.base_url, trust_env=False)
        return self._client

    @property
    def ready(self) -> bool:
        """The readiness check passed and the process still runs: safe to call it."""
        return self.state is ServiceState.READY

    @property
    def uptime(self) -> float | None:
        """Seconds since the current process was started (None when not running)."""
        if self.pid is None or self._started_mono is None:
            return None
        return round(time.monotonic() - self._started_mono, 3)

    def info(self) -> dict[str, Any]:
        """Status as JSON (``GET /api/services/{name}``): state, pid, restarts, last error…"""
        return {
            "name": self.name,
            "state": str(self.state),
            "pid": self.pid,
            "restarts": self.restarts,
            "uptime": self.uptime,
            "exit_code": self.exit_code,
            "ready_since": self.ready_since,
            "last_error": self.last_error,
            "required": self.spec.required,
            "base_url": self.spec.base_url,
            "command": self.spec.argv,
            "lines": self.logs.total,
            "lines_dropped": self.lines_dropped,
        }

    def tail(self, n: int | None = None) -> list[LogLine]:
        """The last ``n`` output lines kept (all of them by default), oldest first."""
        return self.logs.tail(n)

    # -- control -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or resume supervising) the program; no-op while it is active."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._outbox.start()
        self._stop.clear()
        self._attempt = loop.create_future()
        self._task = loop.create_task(self._run(), name=f"wirehub-service-{self.name}")

    async def wait_ready(self) -> None:
        """Wait for the current start attempt; ServiceError (with last lines) if it fails."""
        if self.state is ServiceState.READY:
            return
        if self._attempt is None:
            raise ServiceError(f"service '{self.name}' is not started", service=self.name)
        if not await asyncio.shield(self._attempt):
            raise ServiceError(self.failure_message(), service=self.name)

    def failure_message(self, lines: int = 10) -> str:
        """Why the service is not ready, with its last ``lines`` lines of output."""
        reason = self.last_error or f"state {self.state}"
        text = f"service '{self.name}' is not ready: {reason}"
        tail = self.logs.tail(lines)
        if tail:
            text += "; last output:\n" + "\n".join(
                f"  [{e.stream}] {_shorten(e.line)}" for e in tail
            )
        else:
            text += " (it printed nothing)"
        return text

    async def stop(self) -> None:
        """Stop the program (stop signal to the group, SIGKILL after ``stop_timeout``)."""
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        # The run task terminates the group itself; shield it from our caller's cancel.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def restart(self) -> None:
        """Stop the program, then start it again (does not wait until it is ready)."""
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Stop, flush queued events and close the shared HTTP client."""
        await self.stop()
        await self._outbox.close(timeout=1.0)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the run task ------------------------------------------------------------------

    async def _run(self) -> None:
        policy = self.spec.restart
        delays: Iterator[float] = backoff(initial=policy.initial, cap=policy.cap)
        restart_times: deque[float] = deque()
        try:
            while True:
                failed = await self._run_once()
                if self._stop.is_set():
                    # Asked to stop; an exit that came first keeps its state.
                    if self.state not in (ServiceState.EXITED, ServiceState.FAILED):
                        self._set_state(ServiceState.STOPPED)
                    return
                again = policy.policy == "always" or (policy.policy == "on-failure" and failed)
                if not again:
                    if self.state is ServiceState.STARTING:
                        # It could not even be spawned: nothing will change that by itself.
                        self._set_state(ServiceState.FAILED)
                    return
                now = time.monotonic()
                if self._ready_mono is not None and now - self._ready_mono >= policy.reset_after:
                    # It was healthy for a while: start the backoff over.
                    delays = backoff(initial=policy.initial, cap=policy.cap)
                while restart_times and now - restart_times[0] > policy.window:
                    restart_times.popleft()
                if len(restart_times) >= policy.max_restarts:
                    self.last_error = (
                        f"gave up after {len(restart_times)} restarts within {policy.window:g}s"
                    )
                    logger.warning("service %s: %s", self.name, self.last_error)
                    self._set_state(ServiceState.FAILED)
                    return
                restart_times.append(now)
                delay = next(delays)
                self.restarts += 1
                logger.info("service %s: restart %d in %.2fs", self.name, self.restarts, delay)
                self._set_state(ServiceState.BACKOFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    self._set_state(ServiceState.STOPPED)
                    return
        finally:
            self._settle_attempt(False)

    async def _run_once(self) -> bool:
        """One process lifetime; returns True if it ended as a failure."""
        self._log_matched.clear()
        self._ready_mono = None
        self.pid = None
        try:
            proc = self._spawn()
        except OSError as exc:
            self._set_state(ServiceState.STARTING)
            self.exit_code = None
            self.last_error = f"cannot start {self.spec.argv[0]!r}: {exc.strerror or exc}"
            self._line("supervisor", self.last_error)
            logger.error("service %s: %s", self.name, self.last_error)
            self._settle_attempt(False)
            return True
        if self._reaper is not None:
            self._reaper.register(
                proc.pid,
                service=self.name,
                stop_signal=self.spec.stop_signal,
                stop_timeout=self.spec.stop_timeout,
            )
        self.pid = proc.pid
        self._started_mono = time.monotonic()
        self.exit_code = None
        self.last_error = None
        self._set_state(ServiceState.STARTING)
        logger.info("service %s: started pid %d: %s", self.name, proc.pid, self.spec.argv)
        readers = await self._connect_pipes(proc)
        exited = _watch_exit(proc)
        try:
            return await self._supervise(proc, exited)
        finally:
            # Whatever happened: nothing of the group survives this run.
            if not exited.done():
                await self._terminate(proc, exited)
            await self._reap_group(proc.pid)
            if self._reaper is not None:
                self._reaper.unregister(proc.pid)
            await self._drain(readers)
            self.exit_code = exited.result() if exited.done() else proc.returncode
            self.pid = None
            self._started_mono = None

    async def _supervise(self, proc: subprocess.Popen[bytes], exited: asyncio.Future[int]) -> bool:
        spec = self.spec
        # 1. Starting: the probe against the exit, a stop request and ready_timeout.
        probe = make_probe(spec.ready, self._log_matched)
        outcome = await wait_ready(probe, exited, self._stop, spec.ready_timeout)
        if outcome == "stopped":
            await self._terminate(proc, exited)
            return False
        if outcome == "exited":
            self.last_error = f"exited with code {exited.result()} before it was ready"
            return self._exited(exited.result(), failure=True)
        if outcome == "timeout":
            self.last_error = f"not ready within {spec.ready_timeout:g}s"
            logger.error("service %s: %s", self.name, self.last_error)
            self._settle_attempt(False)
            await self._terminate(proc, exited, final=ServiceState.EXITED)
            return True
        # 2. Ready: wait for the exit or a stop request.
        self.ready_since = time.time()
        self._ready_mono = time.monotonic()
        self._set_state(ServiceState.READY)
        self._settle_attempt(True)
        stop_task: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        race: set[asyncio.Future[Any]] = {exited, stop_task}
        try:
            await asyncio.wait(race, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
        if exited.done():
            code = exited.result()
            if code != 0:
                self.last_error = f"exited with code {code}"
            return self._exited(code, failure=code != 0)
        await self._terminate(proc, exited)
        return False

    def _exited(self, code: int, *, failure: bool) -> bool:
        self.exit_code = code
        self.pid = None
        self.ready_since = None
        level = logging.WARNING if failure else logging.INFO
        logger.log(level, "service %s: exited with code %s", self.name, code)
        self._set_state(ServiceState.EXITED)
        self._settle_attempt(False)
        return failure

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env}
        return subprocess.Popen(
            self.spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.spec.cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )

    async def _connect_pipes(self, proc: subprocess.Popen[bytes]) -> list[PipeReader]:
        loop = asyncio.get_running_loop()
        readers = []
        for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert pipe is not None
            reader = PipeReader(stream, self._line, max_line=self.spec.max_line)
            await loop.connect_read_pipe(lambda r=reader: r, pipe)  # type: ignore[misc]
            readers.append(reader)
        return readers

    async def _terminate(
        self,
        proc: subprocess.Popen[bytes],
        exited: asyncio.Future[int],
        *,
        final: ServiceState | None = None,
    ) -> None:
        """Stop signal to the group, SIGKILL after ``stop_timeout``; wait for the exit."""
        if exited.done():
            return
        self._set_state(ServiceState.STOPPING)
        sig = signal.Signals(self.spec.stop_signal)
        logger.info("service %s: sending %s to process group %d", self.name, sig.name, proc.pid)
        _killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.spec.stop_timeout)
        except TimeoutError:
            logger.warning(
                "service %s: still running %gs after %s, sending SIGKILL",
                self.name,
                self.spec.stop_timeout,
                sig.name,
            )
            _killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(exited)
        self.exit_code = exited.result()
        self.pid = None
        self.ready_since = None
        if final is not None:
            self._set_state(final)

    async def _reap_group(self, pgid: int) -> None:
        """The leader is gone; make sure the rest of its group follows it."""
        if not _group_alive(pgid):
            return
        sig = signal.Signals(self.spec.stop_signal)
        logger.info("service %s: process group %d outlived its leader", self.name, pgid)
        _killpg(pgid, sig)
        deadline = time.monotonic() + self.spec.stop_timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if _group_alive(pgid):
            logger.warning("service %s: SIGKILL to process group %d", self.name, pgid)
            _killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while _group_alive(pgid) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

    async def _drain(self, readers: list[PipeReader]) -> None:
        """Read what is left in the pipes; stop reading if someone outside the group holds them."""
        pending = [r.done for r in readers if not r.done.done()]
        if pending:
            await asyncio.wait(pending, timeout=PIPE_DRAIN_TIMEOUT)
        for reader in readers:
            reader.close()

    # -- events and lines --------------------------------------------------------------

    def _settle_attempt(self, ok: bool) -> None:
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(ok)

    def _set_state(self, state: ServiceState) -> None:
        if state is self.state:
            return
        self.state = state
        logger.info(
            "service %s: %s (pid=%s exit_code=%s restarts=%d)",
            self.name,
            state,
            self.pid,
            self.exit_code,
            self.restarts,
        )
        self._enqueue(
            SERVICES_ROOM,
            {
                "event": "state",
                "service": self.name,
                "state": str(state),
                "pid": self.pid,
                "exit_code": self.exit_code,
                "restarts": self.restarts,
            },
        )

    def _line(self, stream: str, line: str) -> None:
        self.logs.append(stream, line)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("service %s [%s] %s", self.name, stream, line)
        if (
            self._log_re is not None
            and self.state is ServiceState.STARTING
            and not self._log_matched.is_set()
            and self._log_re.search(line)
        ):
            self._log_matched.set()
        if self._publish is None:
            return
        entry = (log_room(self.name), {"service": self.name, "stream": stream, "line": line})
        if not self._outbox.offer(entry):
            self.lines_dropped += 1

    def _enqueue(self, room: str, data: Any) -> None:
        """A state change: never dropped (a few per run), in order with the lines."""
        if self._publish is not None:
            self._outbox.push((room, data))

    async def _publish_one(self, entry: tuple[str, Any]) -> None:
        """The pump's handler: one publish failing does not stop the next."""
        room, data = entry
        if self._publish is None:
            return
        try:
            await self._publish(room, data)
        except Exception:
            logger.exception("service %s: publishing to %s failed", self.name, room)


def _shorten(line: str, limit: int = 500) -> str:
    return line if len(line) <= limit else line[:limit] + f"... ({len(line)} chars)"


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Does any process of the group still run? Zombies (already dead) do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Orphans that died wait as zombies until init reaps them; on Linux look closer.
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _watch_exit(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future with the exit code, resolved when the process exits (not when pipes close)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        # No pidfd (old kernel, not Linux): wait in a thread.
        def waited(done: asyncio.Future[int]) -> None:
            if not future.done():
                future.set_result(done.result())

        loop.run_in_executor(None, proc.wait).add_done_callback(waited)
        return future

    def readable() -> None:
        code = proc.poll()
        if code is None:
            return
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not future.done():
            future.set_result(code)

    loop.add_reader(pidfd, readable)
    return future
