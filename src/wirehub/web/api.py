"""REST API for rooms and clients: ``/api/rooms``, ``/api/clients``, ``/api/broadcast``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from wirehub.core.protocol import ROOM_RE
from wirehub.errors import BadRequest, NotFound, WirehubError
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["build_api_router"]


class DataBody(BaseModel):
    """Any JSON value under ``data``."""

    data: Any = Field(..., description="Any JSON value")


class PublishResult(BaseModel):
    room: str
    offset: int


class RoomSummary(BaseModel):
    name: str
    offset: int
    member_count: int
    messages: int


class RoomDetail(RoomSummary):
    first_offset: int
    members: list[str]
    presence_events: bool


class HistoryPage(BaseModel):
    room: str
    offset: int
    first_offset: int
    recovered: bool
    messages: list[dict[str, Any]]


class ClientInfo(BaseModel):
    id: str
    kind: str
    node: str
    rooms: list[str]
    connected_at: float
    queued: int
    peer: str | None = None


def _check_room(room: str) -> str:
    if not ROOM_RE.match(room):
        raise http_error(BadRequest(f"'{room}' is not a valid room name"))
    return room


def build_api_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/api")
    node = hub.node

    def client_info(conn: Any) -> ClientInfo:
        return ClientInfo(
            id=conn.id,
            kind=conn.kind,
            node=hub.node_id,
            rooms=sorted(conn.rooms),
            connected_at=conn.connected_at,
            queued=conn.queued,
            peer=conn.meta.get("peer"),
        )

    @router.get("/rooms", tags=["rooms"])
    async def list_rooms() -> list[RoomSummary]:
        return [
            RoomSummary(
                name=r.name, offset=r.offset, member_count=len(r.members), messages=r.messages
            )
            for r in node.rooms
        ]

    @router.post("/rooms/{room:path}/publish", tags=["rooms"])
    async def publish(room: str, body: DataBody) -> PublishResult:
        _check_room(room)
        offset = await hub.publish(room, body.data)
        return PublishResult(room=room, offset=offset)

    @router.get("/rooms/{room:path}/history", tags=["rooms"])
    async def history(
        room: str,
        since: int = Query(0, ge=0, description="Return messages with an offset greater than this"),
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> HistoryPage:
        _check_room(room)
        try:
            target = node.rooms.get(room)
        except WirehubError as exc:
            raise http_error(exc) from None
        replay = target.history.since(since)
        messages = [orjson.loads(frame) for frame in replay.frames[:limit]]
        return HistoryPage(
            room=room,
            offset=target.offset,
            first_offset=replay.first_offset,
            recovered=replay.recovered,
            messages=messages,
        )

    @router.get("/rooms/{room:path}", tags=["rooms"])
    async def room_detail(room: str) -> RoomDetail:
        _check_room(room)
        try:
            target = node.rooms.get(room)
        except WirehubError as exc:
            raise http_error(exc) from None
        return RoomDetail(
            name=target.name,
            offset=target.offset,
            first_offset=target.history.first_offset,
            member_count=len(target.members),
            members=sorted(target.members),
            messages=target.messages,
            presence_events=target.presence_events(),
        )

    @router.get("/clients", tags=["clients"])
    async def list_clients() -> list[ClientInfo]:
        return [client_info(c) for c in node.clients.values()]

    @router.get("/clients/{client_id}", tags=["clients"])
    async def get_client(client_id: str) -> ClientInfo:
        conn = node.clients.get(client_id)
        if conn is None:
            raise http_error(NotFound(f"client '{client_id}' is not connected"))
        return client_info(conn)

    @router.post("/clients/{client_id}/send", tags=["clients"], status_code=202)
    async def send(client_id: str, body: DataBody) -> dict[str, str]:
        try:
            await hub.send(client_id, body.data)
        except WirehubError as exc:
            raise http_error(exc) from None
        return {"status": "queued"}

    @router.delete("/clients/{client_id}", tags=["clients"], status_code=204)
    async def disconnect(client_id: str) -> Response:
        try:
            await hub.disconnect(client_id)
        except WirehubError as exc:
            raise http_error(exc) from None
        return Response(status_code=204)

    @router.post("/broadcast", tags=["clients"])
    async def broadcast(body: DataBody) -> dict[str, int]:
        return {"delivered": await hub.broadcast(body.data)}

    return router
