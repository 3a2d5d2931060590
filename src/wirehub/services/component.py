"""``Services``: the hub component that starts every service in ``depends_on`` order.

It is also the ``hub.services`` mapping (name → :class:`Service`). Start goes
dependencies first; a required service (and any service something depends on)
must be ready before the next one starts. If a required one fails, the ones
already started are stopped and the hub's start fails with a message naming
the service and its last lines. Stop goes in reverse order.

Before the first service starts, what a hub killed with SIGKILL left running is
stopped (see :mod:`wirehub.services.reaper`), so an orphan cannot hold a port
the new start needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping

from wirehub.errors import NotFound
from wirehub.services.reaper import Reaper
from wirehub.services.spec import ServiceSpec, start_order
from wirehub.services.supervisor import Publish, Service, ServiceError, ServiceState

__all__ = ["Services"]

logger = logging.getLogger("wirehub.services")


class Services(Mapping[str, Service]):
    """Every configured service, as a hub component and a read-only mapping."""

    name = "services"

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        *,
        publish: Publish | None = None,
        state_dir: str | None = None,
        watchdog: bool = True,
    ) -> None:
        ordered = start_order(specs)
        #: The watchdog and the records that make services die with the hub, even on SIGKILL.
        self.reaper = Reaper(state_dir=state_dir, watchdog=watchdog)
        self._services: dict[str, Service] = {
            s.name: Service(s, publish=publish, reaper=self.reaper) for s in ordered
        }
        needed = {dep for s in ordered for dep in s.depends_on}
        self._wait_for = {s.name for s in ordered if s.required or s.name in needed}

    # -- Mapping ---------------------------------------------------------------------

    def __getitem__(self, name: str) -> Service:
        return self._services[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._services)

    def __len__(self) -> int:
        return len(self._services)

    def get_service(self, name: str) -> Service:
        """Like ``self[name]`` but NotFound (wire code ``not_found``) for unknown names."""
        try:
            return self._services[name]
        except KeyError:
            raise NotFound(f"no service named '{name}'", service=name) from None

    # -- Component ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every service, dependencies first; required ones must become ready.

        A required service (or one another depends on) that fails raises
        ServiceError with its last output lines, after the ones already started
        are stopped again; an optional one only logs a warning.
        """
        started: list[Service] = []
        try:
            if self._services:
                # Leftovers of a hub that was killed (and its watchdog too) go first;
                # then the watchdog starts, before any service.
                await self.reaper.start()
            for service in self._services.values():
                await service.start()
                started.append(service)
                if service.name not in self._wait_for:
                    continue
                try:
                    await service.wait_ready()
                except ServiceError as exc:
                    if service.spec.required:
                        logger.error("%s", exc)
                        raise
                    logger.warning("%s (not required: going on)", exc)
                else:
                    logger.info("service %s is ready", service.name)
        except BaseException:
            # All or nothing: stop what was started, in reverse order, even if cancelled.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._close(reversed(started), reaper=True))
            raise

    async def stop(self) -> None:
        """Stop every service in reverse start order (the whole process group of each)."""
        await self._close(reversed(list(self._services.values())), reaper=True)

    async def _close(self, services: Iterable[Service], *, reaper: bool = False) -> None:
        for service in services:
            try:
                await service.close()
            except Exception:
                logger.exception("error while stopping service %s", service.name)
        if reaper:
            # Every group is gone: the watchdog exits and the record is deleted.
            await self.reaper.close()

    def readiness(self) -> dict[str, bool]:
        """``{"service:<name>": ready}`` for ``/readyz``, for the required services only."""
        return {
            f"service:{name}": s.state is ServiceState.READY
            for name, s in self._services.items()
            if s.spec.required
        }
