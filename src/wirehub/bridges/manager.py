"""Every configured TCP bridge as one hub component: all start, or none stays open.

:meth:`BridgeSet.start` imports every codec first (a bad ``module:function``
fails before any port opens), then opens the listeners in order; if one port is
taken, the ones already open are closed again and the start fails with a
:class:`~wirehub.errors.ConfigError` naming the bridge and the port. A stats
snapshot of every bridge goes to ``$bridges`` every ``stats_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from wirehub.bridges.tcp import BRIDGES_ROOM, BridgeConfig, HubPort, TcpBridge

__all__ = ["BridgeSet"]

logger = logging.getLogger("wirehub.bridges")


class BridgeSet:
    """The ``bridges`` component: start/stop every :class:`TcpBridge` together."""

    name = "bridges"

    def __init__(
        self,
        hub: HubPort,
        configs: Iterable[BridgeConfig],
        *,
        stats_interval: float = 2.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.hub = hub
        self._bridges = {c.name: TcpBridge(hub, c) for c in configs}
        #: Read-only name → bridge (``hub.bridges``).
        self.bridges: Mapping[str, TcpBridge] = MappingProxyType(self._bridges)
        self.stats_interval = stats_interval
        self.stop_timeout = stop_timeout
        self._started: list[TcpBridge] = []
        self._stats_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Import every codec, then open every port; on any failure none stays open."""
        # 1. Every codec imports, or nothing opens.
        for bridge in self._bridges.values():
            bridge.load_codecs()
        # 2. Open the listeners; on failure close the ones already open.
        try:
            for bridge in self._bridges.values():
                await bridge.start()
                self._started.append(bridge)
        except BaseException:
            await self._stop_bridges()
            raise
        # 3. Periodic stats for the dashboard.
        if self.stats_interval > 0:
            self._stats_task = asyncio.get_running_loop().create_task(
                self._stats_loop(), name="wirehub-bridges-stats"
            )

    async def stop(self) -> None:
        """Close every bridge (listener and clients, 1001), each bounded in time."""
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
            self._stats_task = None
        await self._stop_bridges()

    async def _stop_bridges(self) -> None:
        started, self._started = self._started, []
        results = await asyncio.gather(
            *(b.stop(self.stop_timeout) for b in reversed(started)), return_exceptions=True
        )
        for bridge, result in zip(reversed(started), results, strict=True):
            if isinstance(result, BaseException):
                logger.error("bridge %s did not stop cleanly: %r", bridge.name, result)

    def readiness(self) -> dict[str, bool]:
        """``{"bridge:<name>": listening}`` for ``/readyz``."""
        return {f"bridge:{name}": b.listening for name, b in self._bridges.items()}

    def stats(self) -> list[dict[str, Any]]:
        """:meth:`TcpBridge.stats` of every bridge, in configuration order."""
        return [b.stats() for b in self._bridges.values()]

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            room = self.hub.node.rooms.find(BRIDGES_ROOM)
            if room is not None and room.members:
                await self.hub.publish(BRIDGES_ROOM, {"event": "stats", "bridges": self.stats()})
