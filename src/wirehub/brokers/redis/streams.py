"""Reads of a room's history stream (``P:room:R:stream``): replays and read-backs.

The stream holds each message under the id ``<offset>-0`` with the fields
``t`` (ms), ``x`` (the excluded sender) and ``f`` (the encoded frame); the
publish script (scripts.py) writes it and trims it by length and age.
"""

from __future__ import annotations

import time
from typing import Any

from wirehub.brokers.keys import Keys
from wirehub.core.history import Replay

__all__ = ["read_range", "replay"]


async def read_range(
    redis: Any, keys: Keys, room: str, first: int, last: int
) -> list[tuple[int, str, str | None]]:
    """(offset, frame, exclude) of the messages ``first..last`` still in the stream."""
    entries = await redis.xrange(
        keys.stream(room), f"{first}-0", f"{last}-0", count=last - first + 1
    )
    return [
        (_entry_offset(entry_id), fields[b"f"].decode(), fields.get(b"x", b"").decode() or None)
        for entry_id, fields in entries
    ]


async def replay(
    redis: Any, keys: Keys, room: str, since: int, head: int, limit: int | None, ttl: float
) -> Replay:
    """Messages after ``since`` up to ``head`` from the stream, and whether that is all."""
    # A node that delivered messages locally during an outage marked the
    # offset it resynced at: whoever had seen no later offset may have missed them.
    marker = await redis.get(keys.gap(room))
    lost_in_outage = marker is not None and since <= int(marker)
    if since >= head:
        return Replay([], since == head and not lost_in_outage, head + 1)
    count = head - since if limit is None else min(limit, head - since)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrange(keys.stream(room), f"{since + 1}-0", f"{head}-0", count=count)
        pipe.xrange(keys.stream(room), "-", "+", count=1)
        entries, oldest = await pipe.execute()
    cutoff = (time.time() - ttl) * 1000
    fresh = [(i, f) for i, f in entries if int(f[b"t"]) >= cutoff]
    frames = [f[b"f"].decode() for _, f in fresh]
    if fresh:
        first_offset = _entry_offset(fresh[0][0])
    elif oldest and int(oldest[0][1][b"t"]) >= cutoff:
        first_offset = max(_entry_offset(oldest[0][0]), since + 1)
    else:
        first_offset = head + 1
    complete = first_offset == since + 1 and (limit is not None or len(frames) == head - since)
    return Replay(frames, complete and not lost_in_outage, first_offset)


def _entry_offset(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
