"""The state directory: one record per hub, so a start cleans up after a hub killed with SIGKILL.

A running hub keeps ``services-<pid>-<token>.json`` up to date (atomically) in
its state directory: its own pid and start time, its watchdog's, and every
service process group. A record whose hub no longer runs is a leftover: the
next start (of any hub of this user on this state directory) stops what it
lists, verified by start time, then deletes it. A record of a live hub is never
touched, so hubs can share the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass

from wirehub.services.watchdog import (
    Group,
    boot_id,
    is_running,
    live_members,
    proc_start,
    signal_pid,
    stop_groups,
)

__all__ = ["RECORD_VERSION", "Record", "read_record", "sweep_dir", "write_record"]

#: Format of the record files; another version is left alone.
RECORD_VERSION = 1
#: A record bigger than this is not ours (a hub records ~120 bytes per service).
MAX_RECORD_BYTES = 1024 * 1024

RECORD_NAME = re.compile(r"^\.?services-(\d+)-[0-9a-f]+\.json(\.tmp)?$")


@dataclass(frozen=True, slots=True)
class Record:
    """What a running hub keeps on disk."""

    boot: str
    owner: tuple[int, int]  # the hub process: (pid, start time)
    watchdog: tuple[int, int] | None
    groups: tuple[Group, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": RECORD_VERSION,
                "boot": self.boot,
                "owner": {"pid": self.owner[0], "start": self.owner[1]},
                "watchdog": (
                    None
                    if self.watchdog is None
                    else {"pid": self.watchdog[0], "start": self.watchdog[1]}
                ),
                "groups": [g.to_dict() for g in self.groups],
            }
        )


def write_record(path: str, record: Record) -> None:
    """Replace the record atomically (a reader sees the old one or the new one)."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, record.to_json().encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_record(path: str) -> Record | None:
    """The record in ``path``, or None if it is not a record of ours (owner, size, format)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        if st.st_size > MAX_RECORD_BYTES:
            return None
        raw = os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
        if data.get("version") != RECORD_VERSION:
            return None
        watchdog = data.get("watchdog")
        return Record(
            boot=str(data["boot"]),
            owner=(int(data["owner"]["pid"]), int(data["owner"]["start"])),
            watchdog=None if not watchdog else (int(watchdog["pid"]), int(watchdog["start"])),
            groups=tuple(Group.from_dict(g) for g in data["groups"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def sweep_dir(state_dir: str, log: Callable[[str], None]) -> list[Group]:
    """Stop what dead hubs (killed with their watchdog) left running; delete their records.

    Blocks while the groups stop (their ``stop_timeout``, then SIGKILL): run it
    in a thread. Returns the groups that still had processes.
    """
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        return []
    me = boot_id()
    found: list[Group] = []
    for name in names:
        matched = RECORD_NAME.match(name)
        if matched is None:
            continue
        path = os.path.join(state_dir, name)
        record = read_record(path)
        if record is None:
            # Half-written by a hub that died between write and rename: nothing to read.
            if name.endswith(".tmp") and proc_start(int(matched.group(1))) is None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        if record.boot == me and is_running(record.owner):
            continue  # a running hub's record
        if record.boot == me:  # after a reboot nothing of it runs, and pids mean nothing
            left = {g: p for g, p in live_members(record.groups).items() if p}
            for group, pids in left.items():
                log(
                    f"hub pid {record.owner[0]} died and left service '{group.service}' "
                    f"running (process group {group.pgid}: pids {' '.join(map(str, pids))}); "
                    "stopping it"
                )
            if left:
                found.extend(left)
                stop_groups(left, log)
            if record.watchdog is not None and is_running(record.watchdog):
                # Its hub is gone and the groups with it: it has no job left (it is stuck).
                signal_pid(record.watchdog[0], signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.unlink(path)
    return found
