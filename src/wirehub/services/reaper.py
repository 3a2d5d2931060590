"""Services die with the hub, even on SIGKILL: the hub's side of the watchdog and the records.

A normal stop, a restart and a crash are handled by the supervisor (stop
signal to the group, SIGKILL after ``stop_timeout``). A hub killed with SIGKILL
(or by the OOM killer) runs none of that, so :class:`Reaper` adds two layers:

1. **The watchdog** (:mod:`wirehub.services.watchdog`): one small process per
   hub, started before the first service and told each process group. When the
   hub dies it stops those groups the way the hub would, then exits.
2. **The record**: a file per hub in the state directory (``$XDG_RUNTIME_DIR/
   wirehub``, else ``$TMPDIR/wirehub-<uid>``) with the hub's, the watchdog's and
   every group's pid and start time. If the watchdog died too, the next hub
   start (before it starts any service, hence before anything binds a port)
   stops what a dead hub left behind, and deletes its record.

Both name processes by pid *and* start time, so a pid that an unrelated program
reused is never signalled. Everything here is best effort: a failure to write
a record or start the watchdog is logged and the services run anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from wirehub.services.records import Record, sweep_dir, write_record
from wirehub.services.watchdog import KILL_WAIT, Group, boot_id, proc_start

__all__ = ["Reaper", "default_state_dir"]

logger = logging.getLogger("wirehub.services")

#: The watchdog program: run by path with ``python -I -S`` (stdlib only, no site).
WATCHDOG = str(Path(__file__).with_name("watchdog.py"))


def default_state_dir() -> str:
    """``$XDG_RUNTIME_DIR/wirehub`` (a per-user tmpfs), else ``$TMPDIR/wirehub-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "wirehub")
    return os.path.join(tempfile.gettempdir(), f"wirehub-{os.getuid()}")


def _check_dir(path: str) -> str | None:
    """Create the state directory (0700); why it cannot be used, or None if it can.

    Records say which processes to kill, so a directory another user can write
    to (a planted record) or that is not ours is refused.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot create it: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.getuid():
        return f"it belongs to uid {st.st_uid}"
    if st.st_mode & 0o077:
        return f"other users may use it (mode {stat.S_IMODE(st.st_mode):o}; want 700)"
    return None


class Reaper:
    """The process groups of one hub's services, kept where they outlive a SIGKILL of the hub."""

    def __init__(self, *, state_dir: str | None = None, watchdog: bool = True) -> None:
        self._wanted_dir = state_dir
        self._use_watchdog = watchdog
        self._groups: dict[int, Group] = {}
        self._dir: str | None = None
        self._dir_checked = False
        self._record: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch: tuple[asyncio.AbstractEventLoop, int] | None = None
        self._closing = False
        self._warned: set[str] = set()
        self._me = (os.getpid(), proc_start(os.getpid()))
        self._boot = boot_id()

    # -- what the supervisor calls ---------------------------------------------------

    @property
    def supported(self) -> bool:
        """Start times come from ``/proc``: without it (not Linux) only normal stops apply."""
        return self._me[1] is not None

    @property
    def state_dir(self) -> str | None:
        """Where the records are, or None when they are off (unusable directory, no /proc)."""
        if not self._dir_checked:
            self._dir_checked = True
            path = self._wanted_dir or default_state_dir()
            problem = _check_dir(path) if self.supported else "no /proc"
            if problem is None:
                self._dir = path
                name = f"services-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
                self._record = os.path.join(path, name)
            elif self.supported:
                self._warn_once(
                    "dir",
                    f"services: not keeping records in {path} ({problem}); a hub and "
                    "watchdog killed together will leave their services running",
                )
        return self._dir

    @property
    def watchdog_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Before the first service: clean up after dead hubs, then start the watchdog.

        Started here rather than with the first service, the watchdog is already
        listening when a service is spawned: a SIGKILL of the hub right after a
        spawn still finds the group in the pipe.
        """
        self._me = (os.getpid(), proc_start(os.getpid()))  # in case the hub was built before a fork
        await self.sweep()
        self._closing = False
        if self._use_watchdog and self.supported and not self._watchdog_alive():
            self._spawn()
        self._save()

    async def sweep(self) -> int:
        """Stop what dead hubs left running (before any service starts); how many groups."""
        state_dir = self.state_dir
        if state_dir is None:
            return 0
        try:
            found = await asyncio.to_thread(sweep_dir, state_dir, self._log_sweep)
        except Exception:
            # Best effort: a failed clean-up must not keep the services from starting.
            logger.exception("services: cleaning up %s failed", state_dir)
            return 0
        return len(found)

    def register(self, pgid: int, *, service: str, stop_signal: int, stop_timeout: float) -> None:
        """A service's process group was just spawned: the watchdog and the record learn it."""
        if not self.supported:
            return
        start = proc_start(pgid)
        if start is None:
            return  # already gone (and reaped): nothing to protect
        self._closing = False
        group = Group(pgid, start, service, int(stop_signal), float(stop_timeout))
        self._groups[pgid] = group
        if self._use_watchdog:
            if self._watchdog_alive():
                self._send(group.to_line())
            else:
                self._spawn()  # it died (or was never started): a new one learns every group
        self._save()

    def unregister(self, pgid: int) -> None:
        """The group is gone (the supervisor reaped it)."""
        if self._groups.pop(pgid, None) is None:
            return
        if self._watchdog_alive():
            self._send(f"remove {pgid}\n")
        self._save()

    async def close(self) -> None:
        """The hub stops (every service is stopped): the watchdog exits, the record goes."""
        self._closing = True
        self._unwatch()
        proc, self._proc = self._proc, None
        if proc is not None:
            # Groups still here outlived their stop: the watchdog tries once more.
            wait = KILL_WAIT + max((g.stop_timeout for g in self._groups.values()), default=0)
            self._send("exit\n", proc)
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            deadline = time.monotonic() + wait + 1.0
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if proc.poll() is None:
                logger.warning("services: watchdog pid %d did not exit: SIGKILL", proc.pid)
                proc.kill()
                proc.wait()
        self._groups.clear()
        if self._record is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._record)

    # -- the watchdog --------------------------------------------------------------------

    def _watchdog_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        """Start the watchdog (again) and tell it every group we have."""
        _ = self.state_dir  # resolves the record path (the watchdog deletes it)
        args = [sys.executable, "-I", "-S", WATCHDOG, str(os.getpid()), self._record or ""]
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                # Its own session: a signal to the hub's group or terminal does not reach it.
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            self._warn_once("spawn", f"services: cannot start the watchdog: {exc}")
            self._proc = None
            return
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc = proc
        logger.info("services: watchdog pid %d started (hub pid %d)", proc.pid, os.getpid())
        for group in self._groups.values():
            self._send(group.to_line(), proc)
        self._watch_exit(proc)

    def _send(self, line: str, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self._proc
        if proc is None or proc.stdin is None or proc.stdin.closed:
            return
        try:
            # A line is far below PIPE_BUF: it is written whole or not at all.
            os.write(proc.stdin.fileno(), line.encode())
        except BlockingIOError:
            self._warn_once("full", f"services: watchdog pid {proc.pid} is not reading")
        except OSError:
            pass  # it died: the exit watcher (or the next register) starts another

    def _watch_exit(self, proc: subprocess.Popen[bytes]) -> None:
        """Start a new watchdog at once if this one dies while the hub runs."""
        self._unwatch()
        try:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(proc.pid)
        except (RuntimeError, AttributeError, OSError):
            return  # checked again on the next register

        def exited() -> None:
            self._unwatch()
            code = proc.poll()
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            if self._closing or proc is not self._proc:
                return
            logger.warning(
                "services: watchdog pid %d exited (code %s) while the hub runs; starting another",
                proc.pid,
                code,
            )
            self._proc = None
            if self._groups:
                self._spawn()
                self._save()

        loop.add_reader(pidfd, exited)
        self._watch = (loop, pidfd)

    def _unwatch(self) -> None:
        if self._watch is None:
            return
        loop, pidfd = self._watch
        self._watch = None
        with contextlib.suppress(Exception):
            loop.remove_reader(pidfd)
        with contextlib.suppress(OSError):
            os.close(pidfd)

    # -- the record ------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_dir is None or self._record is None or self._me[1] is None:
            return
        watchdog = None
        if self._proc is not None:
            started = proc_start(self._proc.pid)
            watchdog = None if started is None else (self._proc.pid, started)
        record = Record(
            boot=self._boot,
            owner=(self._me[0], self._me[1]),
            watchdog=watchdog,
            groups=tuple(self._groups.values()),
        )
        try:
            write_record(self._record, record)
        except OSError as exc:
            self._warn_once("write", f"services: cannot write {self._record}: {exc}")

    def _log_sweep(self, text: str) -> None:
        logger.warning("services: %s", text)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", text)
