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

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = hub.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
