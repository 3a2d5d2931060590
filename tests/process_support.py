"""A server as a user runs it: a real subprocess, its output read as it comes, waits on lines.

``ServerProcess.start(args)`` runs ``args`` (a ``uvicorn``, ``gunicorn``,
``granian`` or ``wirehub serve`` command line) with stdout and stderr merged;
a thread collects the lines, so ``wait_line`` waits on a readiness signal (a
log line) rather than a sleep, and the output is there for the assertion
message when something fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import TIMEOUT

__all__ = ["ROOT", "ServerProcess", "venv_bin"]

ROOT = Path(__file__).resolve().parent.parent


def venv_bin(name: str) -> str:
    """The console script ``name`` next to this interpreter (the venv's ``bin``)."""
    return str(Path(sys.executable).with_name(name))


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, args: list[str], *, env: dict[str, str] | None = None) -> ServerProcess:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own group: stop() reaches the workers a server forks, whatever happens.
            start_new_session=True,
        )
        server = cls(proc)
        server._reader = threading.Thread(target=server._read, daemon=True, name="server-output")
        server._reader.start()
        return server

    def _read(self) -> None:
        # Closed here, at its end: a grandchild (a watchdog) may hold it open
        # after the server is gone, and closing it under this read would block.
        assert self.proc.stdout is not None
        with self.proc.stdout as stdout:
            for raw in stdout:
                with self._changed:
                    self.lines.append(raw.decode(errors="replace"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_line(self, pattern: str, *, count: int = 1, timeout: float = 3 * TIMEOUT) -> str:
        """Wait until ``count`` lines match ``pattern``; the last one. Fails on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"no {count}x {pattern!r} (exit {self.proc.poll()}):\n{''.join(self.lines)}"
                    )
                self._changed.wait(min(left, 0.2))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 6 * TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill what is still running in its process group; wait for the end of its output."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(TIMEOUT)
        if self._reader is not None:
            self._reader.join(TIMEOUT)
