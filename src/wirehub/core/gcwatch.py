"""Garbage-collector pauses: the loop stalls no timer can see coming.

A full (generation 2) collection walks every tracked object in the process.
In a hub that is every module's objects plus every connection's, and it
runs on the event loop's thread, so each one stops every client at once:
measured under ``bench/fanout.py`` with 500 subscribers, 37-95 ms per full
collection (docs/benchmarks.md). The loop-lag sampler wakes every 100 ms and
misses most such pauses; this watch times each collection from the
interpreter's own ``gc.callbacks`` and hands the duration to an observer
(``/metrics``: ``wirehub_gc_pause_seconds{generation}``).

:func:`freeze_after_start` is what ``wirehub serve`` does once the hub is up
(``server.gc_freeze``): one collection, then ``gc.freeze()`` moves every
object alive at that point (the imported modules, the app, the settings)
out of the collector's reach, so later full collections walk only what came
after — the connections. It is process-wide, so an embedded hub leaves it
to the application (docs/deploy.md).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["GcWatch", "freeze_after_start"]


class GcWatch:
    """Times every collection while started; ``observe(generation, seconds)``."""

    __slots__ = ("_began", "_observe", "pauses")

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self._observe = observe
        self._began = 0.0
        #: Collections timed since start, per generation.
        self.pauses = [0, 0, 0]

    @property
    def running(self) -> bool:
        return self._callback in gc.callbacks

    def start(self) -> None:
        if not self.running:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self.running:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # Collections do not nest (the interpreter runs one at a time, whichever
        # thread triggers it), so one start time is enough.
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info["generation"]
        self.pauses[generation] += 1
        self._observe(generation, time.perf_counter() - self._began)


def freeze_after_start() -> int:
    """Collect once, then keep every object alive now out of later collections."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
