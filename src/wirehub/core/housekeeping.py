"""Room housekeeping: drop idle rooms that have nothing left to recover.

:meth:`wirehub.core.rooms.RoomRegistry.collect` does the deciding, a slice at
a time (it looks at idle-queue heads only); this module is the loop around it.
It yields to the event loop between slices, so 100 000 rooms aging out at once
never stall the clients. Plain asyncio: the hub starts
:func:`housekeeping_loop` as a task and cancels it to stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from wirehub.core.rooms import RoomRegistry

__all__ = ["COLLECT_EVERY", "COLLECT_SLICE", "collect_rooms", "housekeeping_loop"]

logger = logging.getLogger("wirehub.housekeeping")

#: Idle rooms dropped per slice (a room with a full history takes ~50 µs to free).
COLLECT_SLICE = 100
#: Seconds between two collections.
COLLECT_EVERY = 30.0


async def collect_rooms(
    rooms: RoomRegistry,
    *,
    slice_size: int = COLLECT_SLICE,
    clock: Callable[[], float] = time.time,
) -> int:
    """Drop the idle rooms with nothing left to recover; returns how many went.

    In slices of ``slice_size``, yielding to the loop between slices.
    """
    dropped = 0
    while True:
        done = rooms.collect(clock(), limit=slice_size)
        dropped += done
        if done < slice_size:
            return dropped
        await asyncio.sleep(0)


async def housekeeping_loop(
    rooms: RoomRegistry, *, every: float = COLLECT_EVERY, slice_size: int = COLLECT_SLICE
) -> None:
    """:func:`collect_rooms` every ``every`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        dropped = await collect_rooms(rooms, slice_size=slice_size)
        if dropped:
            logger.debug("dropped %d idle rooms", dropped)
