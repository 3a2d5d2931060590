"""The node's stats snapshot, and the loop that publishes it into ``$hub.stats``.

Kept out of :class:`wirehub.hub.Hub` (the composition root): the snapshot reads
the node's counters, the loop turns two snapshots into rates.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from wirehub.core.looplag import LoopLagMonitor
from wirehub.core.node import Node

__all__ = ["STATS_ROOM", "publish_stats", "snapshot"]

#: System room where the hub publishes a stats snapshot every ``stats_interval``.
STATS_ROOM = "$hub.stats"


def snapshot(
    node: Node, node_id: str, started_at: float | None, loop_lag: LoopLagMonitor
) -> dict[str, Any]:
    """A snapshot of this node: connections, rooms, message counts, errors, memory."""
    return {
        "node": node_id,
        "uptime": round(time.time() - started_at, 1) if started_at else 0.0,
        "connections": len(node.clients),
        "rooms": len(node.rooms),
        "rooms_evicted": node.rooms.evicted,
        "published": node.rooms.published,
        "deliveries": node.rooms.deliveries,
        "slow_consumers": node.slow_consumers,
        "errors": dict(node.errors),
        "rss_bytes": rss_bytes(),
        "loop_lag_ms": round(loop_lag.last * 1000, 2),
    }


async def publish_stats(
    node: Node, take: Any, loop_lag: LoopLagMonitor, interval: float, sender: str
) -> None:
    """Every ``interval`` s, publish ``take()`` with per-second rates, while anyone listens."""
    rooms = node.rooms
    last_deliveries, last_published, last_at = 0, 0, time.monotonic()
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        elapsed = max(now - last_at, 1e-9)
        stats = take()
        stats["deliveries_per_s"] = round((rooms.deliveries - last_deliveries) / elapsed, 1)
        stats["published_per_s"] = round((rooms.published - last_published) / elapsed, 1)
        stats["loop_lag_max_ms"] = round(loop_lag.take_max() * 1000, 2)
        last_deliveries, last_published, last_at = rooms.deliveries, rooms.published, now
        target = rooms.find(STATS_ROOM)
        if target is not None and target.members:
            node.publish(STATS_ROOM, sender, stats)


def rss_bytes() -> int:
    """Resident memory of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
