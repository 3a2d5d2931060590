"""REST API for TCP bridges: ``GET /api/bridges`` and ``GET /api/bridges/{name}``.

The same snapshots go to the ``$bridges`` room every ``stats_interval`` as
``{"event": "stats", "bridges": [...]}`` for the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from wirehub.errors import NotFound
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["BridgeStats", "build_bridges_router"]


class BridgeStats(BaseModel):
    name: str
    host: str
    port: int = Field(description="The port actually listened on")
    room: str
    framing: Literal["line", "length", "raw", "jsonl"]
    encoding: Literal["utf-8", "base64"]
    direction: Literal["in", "out", "both"]
    listening: bool
    clients: int = Field(description="TCP clients connected now")
    max_clients: int
    clients_total: int = Field(description="TCP clients accepted since start")
    rejected: int = Field(description="Clients refused because max_clients was reached")
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    drops: int = Field(description="Frames discarded (direction, codec returned None or failed)")
    errors: dict[str, int] = Field(description="Error events by code")


def build_bridges_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/api/bridges", tags=["bridges"])

    @router.get("")
    async def list_bridges() -> list[BridgeStats]:
        return [BridgeStats(**b.stats()) for b in hub.bridges.values()]

    @router.get("/{name}")
    async def get_bridge(name: str) -> BridgeStats:
        bridge = hub.bridges.get(name)
        if bridge is None:
            raise http_error(NotFound(f"bridge '{name}' is not configured", bridge=name))
        return BridgeStats(**bridge.stats())

    return router
