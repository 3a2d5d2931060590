"""A chat whose real-time API is typed: validated frames, a typed room, AsyncAPI, SSE.

Two custom frames are typed with pydantic (``@hub.on(kind, model=...)``) and
the ``chat:*`` rooms carry :class:`ChatMessage` data (``hub.room(...)``). A frame
or publish that does not fit is answered ``bad_request`` with one
``{field, message}`` per bad field and the connection goes on; the handler never
sees it. The same models describe the API at ``/asyncapi`` and
``/asyncapi.json``, and ``GET /api/rooms/chat:lobby/events`` streams the room
to any Server-Sent Events client.

    uvicorn examples.typed_chat.app:app        # then open http://127.0.0.1:8000/asyncapi

Typing notices and reaction tallies are not chat messages, so they go to the
untyped side room ``activity:<name>`` of ``chat:<name>``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from wirehub import Connection, Forbidden, Hub, Settings

__all__ = [
    "MAX_TALLIES",
    "ChatMessage",
    "Reacted",
    "Reaction",
    "Strict",
    "Typing",
    "activity_room",
    "app",
    "hub",
]

hub = Hub(Settings())

#: A chat room's name: ``chat:`` and 1-64 letters, digits, ``_`` or ``-``.
CHAT_ROOM = r"^chat:[A-Za-z0-9_-]{1,64}$"
#: Reaction counters kept (oldest dropped first): memory stays bounded whatever clients send.
MAX_TALLIES = 10_000


class Strict(BaseModel):
    """Unknown fields are refused, not dropped: a typo (``txt``) is named in the error."""

    model_config = ConfigDict(extra="forbid")


class ChatMessage(Strict):
    """A line of chat, the data of every message in a chat:* room."""

    text: str = Field(min_length=1, max_length=500)
    reply_to: int | None = Field(default=None, ge=1, description="offset of the message answered")


class Typing(Strict):
    """Someone starts or stops typing in a chat room."""

    room: str = Field(pattern=CHAT_ROOM)
    active: bool = True


class Reaction(Strict):
    """An emoji on one message of a chat room, named by its offset."""

    room: str = Field(pattern=CHAT_ROOM)
    offset: int = Field(ge=1)
    emoji: Literal["+1", "heart", "laugh", "party"]


class Reacted(BaseModel):
    """The reaction's new tally."""

    room: str
    offset: int
    emoji: str
    count: int


def activity_room(room: str) -> str:
    """``chat:lobby`` -> ``activity:lobby``: where its typing notices and tallies go."""
    return "activity:" + room.removeprefix("chat:")


def _member_of(conn: Connection, room: str) -> None:
    if room not in conn.rooms:
        raise Forbidden(f"join '{room}' first", room=room)


hub.room("chat:*", model=ChatMessage)

# (room, offset, emoji) -> count; a key re-inserted on each reaction, so the one reacted to
# least recently goes first. In this process only: with several workers, keep it in Redis.
_tallies: dict[tuple[str, int, str], int] = {}


@hub.on("chat.typing", model=Typing)
async def typing(conn: Connection, msg: Typing) -> dict[str, str]:
    """Tell the room's activity feed that this client types (or stopped)."""
    _member_of(conn, msg.room)
    notice = {"event": "typing", "room": msg.room, "client_id": conn.id, "active": msg.active}
    await hub.publish(activity_room(msg.room), notice, sender=conn.id, exclude=conn.id)
    return {"type": "chat.typing.ok", "room": msg.room}


@hub.on("chat.react", model=Reaction, reply_model=Reacted)
async def react(conn: Connection, msg: Reaction) -> Reacted:
    """Add an emoji to a message; answers its tally, which the activity feed gets too."""
    _member_of(conn, msg.room)
    key = (msg.room, msg.offset, msg.emoji)
    count = _tallies.pop(key, 0) + 1
    if len(_tallies) >= MAX_TALLIES:
        del _tallies[next(iter(_tallies))]
    _tallies[key] = count
    tally = Reacted(room=msg.room, offset=msg.offset, emoji=msg.emoji, count=count)
    await hub.publish(activity_room(msg.room), {"event": "reaction", **tally.model_dump()})
    return tally


app = FastAPI(title="typed chat", lifespan=hub.lifespan)
app.include_router(hub.router)
