"""An app with typed handlers and a typed room, for ``wirehub asyncapi --app asyncapi_app:app``.

Built the way the README builds an app (``FastAPI(lifespan=hub.lifespan)`` and
``include_router(hub.router)``), so the CLI has to find the hub among the
module's globals, as it would in a user's app.
"""

from __future__ import annotations

from fastapi import FastAPI

from typed_models import Order, Typing, TypingAck
from wirehub import Hub, Settings

hub = Hub(Settings())
app = FastAPI(lifespan=hub.lifespan)
app.include_router(hub.router)
hub.room("orders:*", model=Order)


@hub.on("chat.typing", model=Typing, reply_model=TypingAck)
async def typing(conn: object, message: Typing) -> TypingAck:
    """Tell a room that someone is typing."""
    return TypingAck(room=message.room, chars=len(message.text))


@hub.on("chat.raw")
async def raw(conn: object, frame: dict[str, object]) -> None:
    """An untyped custom frame."""
