"""``/healthz`` (alive), ``/readyz`` (ready for traffic), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["build_health_router"]


def build_health_router(hub: Hub) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "node": hub.node_id}

    readiness_body = {
        "application/json": {"example": {"ready": False, "checks": {"hub": False, "jobs": True}}}
    }

    @router.get(
        "/readyz",
        responses={
            200: {"description": "Ready: every check is true"},
            503: {
                "description": "Not ready, with the same body: a check is false (the hub "
                "is starting or draining, a service or Redis is down)",
                "content": readiness_body,
            },
        },
    )
    async def readyz() -> JSONResponse:
        """``{"ready", "checks": {name: bool}}``; 200 when every check is true, else 503."""
        checks = hub.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
