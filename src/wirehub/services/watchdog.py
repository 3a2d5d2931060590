"""The per-hub watchdog, and the stdlib-only helpers that find and stop recorded process groups.

Why a separate process: a hub killed with SIGKILL runs no clean-up code, and
``PR_SET_PDEATHSIG`` only reaches a service's direct child (and fires when the
*thread* that forked dies). So each hub that runs services starts one small
watchdog (``python -I -S watchdog.py HUB_PID RECORD``), in its own session so a
signal to the hub's process group or terminal does not reach it. The hub tells
it each service's process group on its stdin, one line per change::

    add PGID START STOP_SIGNAL STOP_TIMEOUT SERVICE     (e.g. "add 4242 1234567 15 10.0 java")
    remove PGID
    exit

When the hub is gone (a pidfd on it is readable, or its end of the pipe is
closed) the watchdog stops every group still recorded the way the hub would
(``stop_signal``, SIGKILL after ``stop_timeout``), deletes the hub's record
and exits. ``exit`` (a clean hub stop) makes it exit at once.

A process is named by its pid *and* its start time (``/proc/<pid>/stat``), so a
pid that was reused by an unrelated program is never signalled; see
:func:`live_members`. The hub imports this module for the same helpers. Run by
path, it must import nothing but a few small standard modules: it costs about
as much memory as an idle ``python -S`` (~9 MiB RSS) and no CPU while it waits.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # the watchdog does not pay for typing (nor json, re, dataclasses)
    from collections.abc import Callable, Iterable
    from typing import Any

    Log = Callable[[str], None]

__all__ = [
    "KILL_WAIT",
    "Group",
    "boot_id",
    "is_running",
    "live_members",
    "main",
    "proc_start",
    "signal_pid",
    "stop_groups",
]

#: Seconds to wait for a group to vanish after SIGKILL.
KILL_WAIT = 2.0
#: Seconds between checks while waiting for groups to exit.
POLL = 0.02


class Group:
    """A service's process group: its id (the leader's pid) and the leader's start time."""

    __slots__ = ("pgid", "service", "start", "stop_signal", "stop_timeout")

    def __init__(
        self,
        pgid: int,
        start: int,
        service: str,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 10.0,
    ) -> None:
        self.pgid = int(pgid)
        #: Start time of the leader, in clock ticks since boot (``/proc/<pid>/stat`` field 22).
        self.start = int(start)
        self.service = str(service)
        self.stop_signal = int(stop_signal)
        self.stop_timeout = float(stop_timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and (self.pgid, self.start) == (other.pgid, other.start)

    def __hash__(self) -> int:
        return hash((self.pgid, self.start))

    def __repr__(self) -> str:
        return f"Group({self.pgid}, start={self.start}, service={self.service!r})"

    def to_line(self) -> str:
        """The ``add`` message for the watchdog (the name last: it may hold spaces)."""
        name = self.service.replace("\n", " ")
        return f"add {self.pgid} {self.start} {self.stop_signal} {self.stop_timeout!r} {name}\n"

    def to_dict(self) -> dict[str, object]:
        return {
            "pgid": self.pgid,
            "start": self.start,
            "service": self.service,
            "stop_signal": self.stop_signal,
            "stop_timeout": self.stop_timeout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        return cls(
            pgid=data["pgid"],
            start=data["start"],
            service=data["service"],
            stop_signal=data.get("stop_signal", signal.SIGTERM),
            stop_timeout=data.get("stop_timeout", 10.0),
        )


# -- /proc -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, start time) of a process, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime": comm may hold spaces and ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), None if it does not run."""
    found = _stat(pid)
    return None if found is None else found[2]


def boot_id() -> str:
    """This boot's id: start times (and pids) mean nothing across a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def is_running(identity: tuple[int, int] | None) -> bool:
    """Does this (pid, start) process still run (and is it that same process)?"""
    if identity is None:
        return False
    found = _stat(identity[0])
    return found is not None and found[2] == identity[1] and found[0] not in ("Z", "X")


def live_members(groups: Iterable[Group]) -> dict[Group, list[int]]:
    """The pids still running (zombies excluded) in each group that is still *that* group.

    A group is recognized by its leader: if a process with the group's id runs
    and started at another time, the pid was reused and the group is not ours
    (an empty list). Linux never hands out a pid that is still some group's id,
    so while a member of the original group lives, its id points at it; a
    group whose leader is gone keeps only members that started after it.
    """
    result: dict[Group, list[int]] = {}
    wanted: dict[int, Group] = {}
    for group in groups:
        result[group] = []
        try:
            os.killpg(group.pgid, 0)
        except ProcessLookupError:
            continue  # nothing has that group id any more: cheap, and the common case
        except PermissionError:
            continue  # not ours to signal
        wanted[group.pgid] = group
    if not wanted:
        return result
    leaders: dict[int, int] = {}
    members: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return result
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        found = _stat(pid)
        if found is None:
            continue
        state, pgrp, start = found
        if pid in wanted:
            leaders[pid] = start
        if pgrp in wanted and state not in ("Z", "X"):
            members.setdefault(pgrp, []).append((pid, start))
    for pgid, group in wanted.items():
        leader_start = leaders.get(pgid)
        if leader_start is not None and leader_start != group.start:
            continue  # the pid was reused: an unrelated program
        result[group] = sorted(pid for pid, start in members.get(pgid, []) if start >= group.start)
    return result


def _killpg(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - no contextlib: the watchdog imports as little as it can
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(groups: Iterable[Group], log: Log) -> dict[Group, list[int]]:
    """Stop each group like the supervisor does: its stop signal, SIGKILL after its timeout.

    Only groups that :func:`live_members` recognizes are signalled. Returns the
    pids still alive at the end (empty lists when everything is gone).
    """
    alive = {g: pids for g, pids in live_members(groups).items() if pids}
    for group, pids in alive.items():
        sig = signal.Signals(group.stop_signal)
        log(
            f"stopping service '{group.service}': {sig.name} to process group {group.pgid} "
            f"(pids {' '.join(map(str, pids))})"
        )
        _killpg(group.pgid, sig)
    now = time.monotonic()
    term_deadline = {g: now + g.stop_timeout for g in alive}
    kill_deadline: dict[Group, float] = {}
    while alive:
        time.sleep(POLL)
        alive = {g: pids for g, pids in live_members(alive).items() if pids}
        now = time.monotonic()
        for group in alive:
            if group not in kill_deadline and now >= term_deadline[group]:
                log(
                    f"service '{group.service}' still running {group.stop_timeout:g}s after "
                    f"the stop signal: SIGKILL to process group {group.pgid}"
                )
                _killpg(group.pgid, signal.SIGKILL)
                kill_deadline[group] = now + KILL_WAIT
        if alive and all(g in kill_deadline and now >= kill_deadline[g] for g in alive):
            break
    for group, pids in alive.items():
        log(f"service '{group.service}': pids {' '.join(map(str, pids))} outlived SIGKILL")
    return alive


def signal_pid(pid: int, sig: int) -> None:
    """``os.kill`` that does not mind a process that is gone (or not ours)."""
    try:  # noqa: SIM105 - no contextlib (see _killpg)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the watchdog process ------------------------------------------------------------------


def _say(text: str) -> None:
    try:
        sys.stderr.write(f"wirehub watchdog {os.getpid()}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # no stderr (closed, or started without one)


def _apply(lines: list[bytes], groups: dict[int, Group]) -> bool:
    """Apply the hub's messages; True if one of them was ``exit``."""
    for line in lines:
        if not line.strip():
            continue
        words = line.decode(errors="replace").split(" ", 5)
        try:
            if words[0] == "add":
                pgid, start, sig, timeout, name = words[1:6]
                group = Group(int(pgid), int(start), name, int(sig), float(timeout))
                groups[group.pgid] = group
            elif words[0] == "remove":
                groups.pop(int(words[1]), None)
            elif words[0] == "exit":
                return True
            else:
                raise ValueError(words[0])
        except (ValueError, IndexError):
            _say(f"ignoring a bad message: {line[:200]!r}")
    return False


def main(argv: list[str]) -> int:
    """``watchdog.py HUB_PID [RECORD]``: wait for the hub to go, then stop what it left."""
    hub_pid = int(argv[0])
    record = argv[1] if len(argv) > 1 and argv[1] else None
    # Its job ends when the hub's does, not on a signal sent to everything at once
    # (systemd's stop, a terminal's hangup): only SIGKILL ends it early.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    groups: dict[int, Group] = {}
    os.set_blocking(0, False)
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(hub_pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfd (old kernel, not Linux): the pipe, and getppid() once a second
    poller = select.poll()
    poller.register(0, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    buffer = b""
    reason = "" if os.getppid() == hub_pid else "gone"
    while not reason:
        events = poller.poll(None if pidfd is not None else 1000)
        if pidfd is None and os.getppid() != hub_pid:
            reason = "gone"
        for fd, _ in events:
            if fd == pidfd:
                reason = "gone"
                continue
            while True:
                try:
                    chunk = os.read(0, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    reason = reason or "gone"  # the hub's end is closed: it exited
                    poller.unregister(0)
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                if _apply(lines, groups):
                    reason = "exit"
    # The hub may have written more before it died: read what is left in the pipe.
    if reason == "gone":
        try:
            while chunk := os.read(0, 65536):
                *lines, buffer = (buffer + chunk).split(b"\n")
                _apply(lines, groups)
        except OSError:
            pass  # nothing more (the pipe is empty but a leaked copy of its end is open)
    left: dict[Group, list[int]] = {}
    if groups:
        if reason == "gone":
            _say(f"hub pid {hub_pid} is gone; stopping what it left running")
        left = stop_groups(groups.values(), _say)
    if reason == "gone" and record is not None and not left:
        # Nothing of the dead hub runs any more: the next start has nothing to clean up.
        try:  # noqa: SIM105 - no contextlib (see _killpg)
            os.unlink(record)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
