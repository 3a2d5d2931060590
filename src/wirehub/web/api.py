"""REST API for rooms and clients: ``/api/rooms``, ``/api/clients``, ``/api/broadcast``."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field

from wirehub.core.idempotency import MAX_KEY_LENGTH
from wirehub.core.interfaces import ClientRecord
from wirehub.core.protocol import ROOM_RE
from wirehub.core.rooms import MAX_MEMBERS_LISTED
from wirehub.errors import BadRequest, NotFound, WirehubError
from wirehub.web.api_auth import add_revoke_route
from wirehub.web.errors import http_error

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["MAX_PAGE", "build_api_router"]

#: Largest page of ``GET /api/rooms`` and ``GET /api/clients`` (also the default):
#: a listing never costs work proportional to the whole table.
MAX_PAGE = 1000


class DataBody(BaseModel):
    """Any JSON value under ``data``."""

    data: Any = Field(..., description="Any JSON value")


class PublishBody(DataBody):
    """``data``, and the key that makes a retried publish harmless."""

    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="A second publish with this key into the room within "
        "`limits.idempotency_window` is not delivered again and answers the first offset "
        "(the `Idempotency-Key` header does the same)",
    )


class PublishResult(BaseModel):
    room: str
    offset: int


class RoomSummary(BaseModel):
    name: str
    offset: int
    member_count: int
    messages: int = Field(
        description="Messages published into (or delivered to) the room on this node since it "
        "was created here: a counter, not what history holds (first_offset..offset)"
    )


class RoomDetail(RoomSummary):
    first_offset: int
    members: list[str]
    #: Client id → id of the hub node it is connected to (every node's members).
    member_nodes: dict[str, str] = {}
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
    #: Frames waiting in its outbound queue (null for a client on another node).
    queued: int | None = None
    peer: str | None = None


def _check_room(room: str) -> str:
    if not ROOM_RE.match(room):
        raise http_error(BadRequest(f"'{room}' is not a valid room name"))
    return room


def build_api_router(hub: Hub) -> APIRouter:
    router = APIRouter(prefix="/api")
    node = hub.node

    def client_info(record: ClientRecord) -> ClientInfo:
        return ClientInfo(
            id=record.id,
            kind=record.kind,
            node=record.node,
            rooms=list(record.rooms),
            connected_at=record.connected_at,
            queued=record.queued,
            peer=record.peer,
        )

    @router.get("/rooms", tags=["rooms"])
    async def list_rooms(
        response: Response,
        limit: int = Query(MAX_PAGE, ge=1, le=MAX_PAGE, description="Rooms in this page"),
        offset: int = Query(0, ge=0, description="Rooms to skip, in creation order"),
    ) -> list[RoomSummary]:
        response.headers["X-Total-Count"] = str(len(node.rooms))
        return [
            RoomSummary(
                name=r.name, offset=r.offset, member_count=len(r.members), messages=r.messages
            )
            for r in node.rooms.page(offset, limit)
        ]

    @router.post("/rooms/{room:path}/publish", tags=["rooms"])
    async def publish(
        room: str,
        body: PublishBody,
        idempotency_header: str | None = Header(
            None, alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH
        ),
    ) -> PublishResult:
        _check_room(room)
        key = body.idempotency_key
        if idempotency_header is not None:
            if key is not None and key != idempotency_header:
                raise http_error(
                    BadRequest("the Idempotency-Key header and idempotency_key differ")
                )
            key = idempotency_header
        try:
            offset = await hub.publish(room, body.data, idempotency_key=key)
        except WirehubError as exc:  # a typed room's data that does not validate: 422
            raise http_error(exc) from None
        return PublishResult(room=room, offset=offset)

    @router.get("/rooms/{room:path}/history", tags=["rooms"])
    async def history(
        room: str,
        since: int = Query(0, ge=0, description="Return messages with an offset greater than this"),
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> HistoryPage:
        _check_room(room)
        try:
            offset, replay = await hub.broker.history(room, since, limit)
        except WirehubError as exc:
            raise http_error(exc) from None
        messages = [orjson.loads(frame) for frame in replay.frames[:limit]]
        return HistoryPage(
            room=room,
            offset=offset,
            first_offset=replay.first_offset,
            recovered=replay.recovered,
            messages=messages,
        )

    @router.get("/rooms/{room:path}", tags=["rooms"])
    async def room_detail(room: str) -> RoomDetail:
        _check_room(room)
        try:
            members = await hub.broker.members(room)
            offset, replay = await hub.broker.history(room, 0, 1)
            first_offset = replay.first_offset
        except WirehubError as exc:
            raise http_error(exc) from None
        target = node.rooms.find(room)
        policy = node.rooms.policy_for(room)
        presence = target.presence_events() if target else policy.presence_events is not False
        # Bounded like the ``presence`` frame: at most MAX_MEMBERS_LISTED listed.
        listed = sorted(islice(members, MAX_MEMBERS_LISTED))
        return RoomDetail(
            name=room,
            offset=offset,
            first_offset=first_offset,
            member_count=len(members),
            members=listed,
            member_nodes={m: members[m] for m in listed},
            messages=target.messages if target else 0,
            presence_events=presence,
        )

    @router.get("/clients", tags=["clients"])
    async def list_clients(
        response: Response,
        limit: int = Query(MAX_PAGE, ge=1, le=MAX_PAGE, description="Clients in this page"),
        offset: int = Query(0, ge=0, description="Clients to skip, in connection order"),
    ) -> list[ClientInfo]:
        # Every node's clients (with Redis, in one read); the page bounds the reply.
        total, page = await hub.broker.clients(offset, limit)
        response.headers["X-Total-Count"] = str(total)
        return [client_info(record) for record in page]

    @router.get("/clients/{client_id}", tags=["clients"])
    async def get_client(client_id: str) -> ClientInfo:
        record = await hub.broker.client(client_id)
        if record is not None:
            return client_info(record)
        raise http_error(NotFound(f"client '{client_id}' is not connected"))

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

    add_revoke_route(router, hub)  # POST /api/auth/revoke (web/api_auth.py)
    return router
