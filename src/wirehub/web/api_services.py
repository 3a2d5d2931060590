"""REST API for supervised services: ``/api/services``.

``GET /api/services`` and ``GET /api/services/{name}`` give the state, pid,
restarts, uptime, last exit code and ready-since; ``POST .../start|stop|restart``
control one service (``?wait=true`` waits for readiness and answers 503 with the
last output lines if it fails); ``GET .../logs?tail=N`` returns the last lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from wirehub.errors import WirehubError
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub
    from wirehub.services import Service

__all__ = ["ServiceInfo", "ServiceLogs", "build_services_router"]


class ServiceInfo(BaseModel):
    name: str
    #: starting, ready, stopping, stopped, exited, backoff or failed.
    state: str
    pid: int | None
    restarts: int
    #: Seconds since the current process started (null when not running).
    uptime: float | None
    #: Last exit code (negative: killed by that signal number).
    exit_code: int | None
    #: Unix time the service became ready (null when not ready).
    ready_since: float | None
    last_error: str | None
    required: bool
    base_url: str | None
    command: list[str]
    #: Output lines seen, and lines not published because the queue was full.
    lines: int
    lines_dropped: int


class LogEntry(BaseModel):
    ts: float
    stream: str
    line: str


class ServiceLogs(BaseModel):
    service: str
    total: int
    lines: list[LogEntry]


def build_services_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/api/services", tags=["services"])
    services = hub.services

    def find(name: str) -> Service:
        try:
            return services.get_service(name)
        except WirehubError as exc:
            raise http_error(exc) from None

    def info(service: Service) -> dict[str, Any]:
        return service.info()

    async def settle(service: Service, wait: bool) -> dict[str, Any]:
        if wait:
            try:
                await service.wait_ready()
            except WirehubError as exc:
                raise http_error(exc) from None
        return info(service)

    @router.get("", response_model=list[ServiceInfo])
    async def list_services() -> list[dict[str, Any]]:
        return [info(s) for s in services.values()]

    @router.get("/{name}", response_model=ServiceInfo)
    async def get_service(name: str) -> dict[str, Any]:
        return info(find(name))

    @router.post("/{name}/start", response_model=ServiceInfo)
    async def start_service(name: str, wait: bool = False) -> dict[str, Any]:
        """Start it unless it is already starting, ready or in backoff."""
        service = find(name)
        await service.start()
        return await settle(service, wait)

    @router.post("/{name}/stop", response_model=ServiceInfo)
    async def stop_service(name: str) -> dict[str, Any]:
        """Stop signal to its process group, SIGKILL after stop_timeout; answers once stopped."""
        service = find(name)
        await service.stop()
        return info(service)

    @router.post("/{name}/restart", response_model=ServiceInfo)
    async def restart_service(name: str, wait: bool = False) -> dict[str, Any]:
        service = find(name)
        await service.restart()
        return await settle(service, wait)

    @router.get("/{name}/logs", response_model=ServiceLogs)
    async def service_logs(
        name: str, tail: int = Query(100, ge=0, le=100_000, description="last N lines")
    ) -> dict[str, Any]:
        service = find(name)
        return {
            "service": service.name,
            "total": service.logs.total,
            "lines": [entry.to_dict() for entry in service.tail(tail)],
        }

    return router
