"""Write coalescing: what one connection is sent during one loop pass leaves in one write.

A write syscall costs more than everything else a delivery does (one loopback
``write`` ≈ 4 µs of CPU here; 16 frames in one write cost about the same,
docs/benchmarks.md "physical floor"). A fan-out that writes each frame at once
pays it once per message per subscriber. Instead, a connection that can write
raw frames *corks* them: the frames it is sent are kept in a short list, the
connection is put on this loop's dirty list once, and one ``call_soon``
callback per loop pass flushes every dirty connection with one vectored write
each — at the end of the same pass, so nothing waits for a timer and latency
does not grow. The more messages a pass produces (a publisher's burst read in
one go, several publishers), the fewer syscalls per delivery.

One :class:`Coalescer` per node: the dirty list is a plain list (no task, no
future per connection), scheduled at most once per pass.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Coalescer", "Corked"]


class Corked(Protocol):
    """What the coalescer needs of a connection: flush what it corked."""

    def flush(self) -> None: ...


class Coalescer:
    """The dirty list of one event loop, flushed once per pass by one callback."""

    __slots__ = ("_dirty", "flushes")

    def __init__(self) -> None:
        self._dirty: list[Corked] = []
        #: Passes that flushed something (a count for benches and tests).
        self.flushes = 0

    def mark(self, conn: Corked) -> None:
        """``conn`` corked its first frame of this pass: flush it at the end of the pass."""
        dirty = self._dirty
        if not dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        dirty.append(conn)

    def flush(self) -> None:
        """Flush every dirty connection (each one write); also safe to call early."""
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        self.flushes += 1
        for conn in dirty:
            conn.flush()
