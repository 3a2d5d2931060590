"""Everything the hub serves, as one APIRouter for ``app.include_router(hub.router)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.routing import WebSocketRoute

from wirehub.web.api import build_api_router
from wirehub.web.api_bridges import build_bridges_router
from wirehub.web.api_jobs import build_jobs_router
from wirehub.web.api_services import build_services_router
from wirehub.web.health import build_health_router
from wirehub.web.security import api_dependencies
from wirehub.web.ws import WebSocketEndpoint

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["build_router"]


def build_router(hub: Hub) -> APIRouter:
    router = APIRouter()
    router.routes.append(WebSocketRoute("/ws", WebSocketEndpoint(hub), name="wirehub_ws"))
    # Every /api router gets the bearer check (empty when [auth] is off); health stays open.
    api = api_dependencies(hub)
    router.include_router(build_api_router(hub), dependencies=api)
    router.include_router(build_bridges_router(hub), dependencies=api)
    router.include_router(build_jobs_router(hub), dependencies=api)
    router.include_router(build_services_router(hub), dependencies=api)
    router.include_router(build_health_router(hub))
    return router
