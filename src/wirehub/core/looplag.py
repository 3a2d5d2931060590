"""Event-loop lag: how late the loop runs a callback that asked to run now.

A hub that stalls its loop stalls every client at once, and nothing else in
the process can see it happen: the stall is over before anyone could look.
The monitor schedules itself every ``interval`` seconds and records how late
each wake-up was, so a stall shows in ``/metrics`` (a histogram) and on the
dashboard (the worst lag of the last stats period) in production, not only in
a benchmark. It costs one timer callback per interval and no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    """Samples the loop's lag every ``interval`` seconds with one ``call_later``."""

    __slots__ = ("_handle", "_loop", "_observe", "_window_max", "expected_at", "interval", "last")

    def __init__(
        self, *, interval: float = 0.1, observe: Callable[[float], None] | None = None
    ) -> None:
        self.interval = interval
        self._observe = observe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.expected_at = 0.0
        #: The most recent lag, in seconds.
        self.last = 0.0
        self._window_max = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def take_max(self) -> float:
        """The worst lag since the previous call (one stats period), then reset."""
        worst, self._window_max = max(self._window_max, self.last), 0.0
        return worst

    def _schedule(self) -> None:
        assert self._loop is not None
        self.expected_at = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self.expected_at, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        lag = max(0.0, self._loop.time() - self.expected_at)
        self.last = lag
        if lag > self._window_max:
            self._window_max = lag
        if self._observe is not None:
            self._observe(lag)
        self._schedule()
