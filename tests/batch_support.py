"""A tiny real WebSocket peer that sends batched frames (docs/protocol.md, "Batched frames").

It is the far end the clients' splitting is tested against without depending on the
hub's own batching: a real ``websockets`` server on a free loopback port that speaks
just enough of the protocol (``welcome``, ``joined``, ``message``, ``pong``, ``ack``)
and, when the client asked with ``batch=1``, packs up to ``per_frame`` messages into
each text frame, LF-separated, with the ``joined`` reply sharing the first frame. It
records every request path and how many messages each frame carried, so a test can
assert what went over the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve

__all__ = ["BatchingPeer", "message"]


def message(room: str, offset: int, data: Any = None) -> dict[str, Any]:
    """A ``message`` frame as the hub sends it."""
    body = {"i": offset} if data is None else data
    return {"type": "message", "room": room, "from": "$hub", "data": body, "ts": 0.0,
            "offset": offset}  # fmt: skip


class BatchingPeer:
    """``async with BatchingPeer(messages=40) as peer:`` → ``peer.url`` (ws://…/ws).

    After a ``join`` it sends ``joined`` and ``messages`` room messages (offsets 1…n),
    ``per_frame`` per text frame when the client asked for ``batch=1`` (one per frame
    otherwise), then each text of ``extra`` as one raw frame."""

    def __init__(self, *, messages: int = 40, per_frame: int = 16, extra: Sequence[str] = ()):
        self.messages = messages
        self.per_frame = per_frame
        self.extra = list(extra)
        #: Request path (with query) of every connection.
        self.paths: list[str] = []
        #: Messages carried by each text frame sent after a join, in order.
        self.frames: list[int] = []
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> BatchingPeer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        self.paths.append(path)
        query = parse_qs(urlsplit(path).query)
        batch = query.get("batch") == ["1"]
        client_id = query.get("client_id", ["peer-client"])[0]
        welcome: dict[str, Any] = {"type": "welcome", "client_id": client_id, "node": "peer",
                                   "heartbeat": 20.0, "max_frame": 65536}  # fmt: skip
        if batch:
            welcome["batch"] = True
        await ws.send(orjson.dumps(welcome).decode())
        async for raw in ws:
            if not isinstance(raw, str):
                continue
            frame = orjson.loads(raw)
            kind, ref = frame.get("type"), frame.get("ref")
            if kind == "join":
                room = frame["room"]
                joined = {"type": "joined", "room": room, "offset": 0, "member_count": 1,
                          "ref": ref}  # fmt: skip
                items = [joined, *(message(room, i) for i in range(1, self.messages + 1))]
                size = self.per_frame if batch else 1
                for start in range(0, len(items), size):
                    chunk = items[start : start + size]
                    self.frames.append(len(chunk))  # before the client can see the frame
                    await ws.send("\n".join(orjson.dumps(item).decode() for item in chunk))
                for text in self.extra:
                    await ws.send(text)
            elif kind == "ping":
                await ws.send(orjson.dumps({"type": "pong", "ts": 0.0, "ref": ref}).decode())
            elif kind is not None and kind != "pong":
                await ws.send(orjson.dumps({"type": "ack", "ref": ref}).decode())
