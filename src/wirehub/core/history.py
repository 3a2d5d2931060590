"""Per-room history: a ring of encoded ``message`` frames with offsets, bounded by count and age.

Kept apart from :mod:`wirehub.core.rooms` because it is the one piece both
sides of the broker seam speak: the room table keeps a :class:`History` per
room (the embedded mode), and every :class:`~wirehub.core.interfaces.Broker`
answers a ``join`` with ``since`` or a history read with a :class:`Replay`.
It imports nothing from the rest of the core, so ``interfaces`` and ``rooms``
can both depend on it without depending on each other.

Offsets start at 1 and never repeat in a room; a frame is stored already
encoded, so a replay sends the very bytes live members got.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["History", "Replay"]


@dataclass(slots=True)
class Replay:
    """What a ``join`` with ``since`` gets back: frames to resend and whether that is all."""

    frames: list[str]
    recovered: bool
    first_offset: int


class History:
    """A ring of encoded ``message`` frames bounded by count and age."""

    __slots__ = ("_items", "last_offset", "size", "ttl")

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self.last_offset = 0
        self._items: deque[tuple[int, float, str]] = deque()

    def append(self, offset: int, ts: float, frame: str) -> None:
        self.last_offset = offset
        if self.size <= 0:
            return
        self._items.append((offset, ts, frame))
        if len(self._items) > self.size:
            self._items.popleft()

    def expire(self, now: float) -> None:
        cutoff = now - self.ttl
        items = self._items
        while items and items[0][1] < cutoff:
            items.popleft()

    @property
    def newest_ts(self) -> float | None:
        """Timestamp of the newest message kept (None when nothing is kept)."""
        return self._items[-1][1] if self._items else None

    @property
    def first_offset(self) -> int:
        """Offset of the oldest message still kept (last_offset + 1 when empty)."""
        return self._items[0][0] if self._items else self.last_offset + 1

    def __len__(self) -> int:
        return len(self._items)

    def since(self, since: int) -> Replay:
        """Frames with offset > since; ``recovered`` only if none in between was lost."""
        self.expire(time.time())
        if since > self.last_offset:
            # The client saw offsets this history never had (the hub restarted).
            return Replay([], False, self.first_offset)
        frames = [frame for offset, _, frame in self._items if offset > since]
        recovered = since + 1 >= self.first_offset
        return Replay(frames, recovered, self.first_offset)

    def entries(self, since: int = 0, limit: int | None = None) -> Iterator[tuple[int, float, str]]:
        self.expire(time.time())
        count = 0
        for item in self._items:
            if item[0] > since:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
