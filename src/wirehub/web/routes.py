"""Everything the hub serves, as one APIRouter for ``app.include_router(hub.router)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.routing import WebSocketRoute

from wirehub.web.api import build_api_router
from wirehub.web.health import build_health_router
from wirehub.web.ws import WebSocketEndpoint

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["build_router"]


def build_router(hub: Hub) -> APIRouter:
    router = APIRouter()
    router.routes.append(WebSocketRoute("/ws", WebSocketEndpoint(hub), name="wirehub_ws"))
    router.include_router(build_api_router(hub))
    router.include_router(build_health_router(hub))
    return router
