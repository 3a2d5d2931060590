"""The ``/ws`` endpoint as a raw ASGI app: handshake, reader loop, ASGI transport.

Raw ASGI rather than Starlette's ``WebSocket`` wrapper: the reader loop is the
hot path of every inbound frame and the writer is the hot path of every
delivery, and neither needs the wrapper's state machine.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from wirehub.core.connection import Connection
from wirehub.core.outbound import Outbound, frames_for
from wirehub.core.protocol import CLIENT_ID_RE, CloseCode, encode
from wirehub.core.ratelimit import FrameLimiter
from wirehub.embedded import embedding_for
from wirehub.errors import BadRequest
from wirehub.web.handshake import HandshakeGate, Refused
from wirehub.web.rawsend import EXTENSION, EXTENSION_MANY, RawWrite, RawWriteMany

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["ASGITransport", "WebSocketEndpoint", "WebSocketShortcut"]

logger = logging.getLogger("wirehub.ws")

Scope = dict[str, Any]

#: A reader yields to the loop after this many frames, or this many seconds of
#: handling them, whichever comes first (docs/benchmarks.md: the coalescing).
READ_BATCH = 64
READ_BUDGET = 0.002


class ASGITransport:
    """Connection transport over an ASGI WebSocket ``send`` callable."""

    kind = "ws"
    __slots__ = ("_batch", "_raw", "_raw_many", "_reader", "_send", "aborted", "coalesces")

    def __init__(
        self,
        send: Any,
        reader: asyncio.Task[Any] | None,
        raw: RawWrite | None = None,
        raw_many: RawWriteMany | None = None,
        batch: tuple[int, int] | None = None,
    ) -> None:
        self._send: Callable[[dict[str, Any]], Awaitable[None]] = send
        self._reader = reader
        self._raw = raw
        self._raw_many = raw_many
        #: (max messages, max bytes) per text frame for a client on ``?batch=1``.
        self._batch = batch
        #: The server writes a pass's frames in one write (its raw-send extension).
        self.coalesces = raw_many is not None
        self.aborted = False

    @property
    def write_frame(self) -> RawWrite | None:
        """The server's raw frame writer (bytes → written or declined), for per-pass writes."""
        return self._raw

    @property
    def raw_send(self) -> bool:
        """Whether the server offered its raw-send extension (see web/rawsend.py)."""
        return self._raw is not None

    def try_write(self, out: Outbound) -> bool:
        """Write the envelope's frame bytes straight to the socket, when the server offers it.

        The frame is built once per publish on the envelope; the server's
        extension declines while the socket is paused or closed, or when an
        extension (permessage-deflate) is in use, and so does this without it.
        """
        raw = self._raw
        return raw is not None and raw(out.ws_frame)

    def try_writelines(self, outs: list[Outbound]) -> bool:
        """Write a loop pass's frames in one write: one frame each, or batched (``?batch=1``)."""
        raw_many = self._raw_many
        return raw_many is not None and raw_many(frames_for(outs, self._batch))

    def send(self, out: Outbound) -> Awaitable[None]:
        # A plain method returning the server's own coroutine: one coroutine
        # frame less per delivery. The ASGI message is built once per publish,
        # on the envelope (servers only read it).
        return self._send(out.asgi)

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    def abort(self) -> None:
        # ASGI gives no handle on the socket: end the app's reader, and the
        # server closes the transport when the app returns.
        self.aborted = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()


async def _deny(
    scope: Scope,
    send: Any,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Refuse the handshake with an HTTP status (ASGI denial-response extension)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"application/json"), *(extra_headers or [])]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY})


class WebSocketEndpoint:
    """ASGI app for ``/ws?client_id=ID``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # Embedded under uvicorn, the hub hands it the protocols this endpoint's
        # bounds and frame-once writer live in (web/uvicorn_protocols/embed.py).
        embedding_for(hub).adopt_uvicorn = functools.partial(_adopt_uvicorn, hub)
        limits = hub.settings.limits
        #: Origin, connections per IP and credentials, checked before accepting.
        self.gate = HandshakeGate(
            hub.auth,
            allowed_origins=hub.settings.auth.allowed_origins,
            max_per_ip=limits.max_connections_per_ip,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        hub = self.hub
        if not hub.accepting:
            await _deny(scope, send, 503, b'{"detail":"the hub is not accepting connections"}')
            return

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            admission = self.gate.admit(scope, query)
        except Refused as refused:
            body = encode({"detail": refused.error.to_wire()}).encode()
            await _deny(scope, send, refused.status, body, refused.headers())
            return
        try:
            await self._serve(scope, receive, send, admission.client_id, admission.principal)
        finally:
            self.gate.release(admission)

    async def _serve(
        self, scope: Scope, receive: Any, send: Any, client_id: str | None, principal: Any
    ) -> None:
        hub = self.hub
        client_id = client_id or hub.generate_client_id()
        await send({"type": "websocket.accept"})
        if not CLIENT_ID_RE.match(client_id):
            await send(
                {
                    "type": "websocket.close",
                    "code": CloseCode.BAD_CLIENT_ID,
                    "reason": "invalid client_id: 1-128 of A-Z a-z 0-9 _ . : @ -",
                }
            )
            return
        extensions = scope.get("extensions") or {}
        raw, raw_many = extensions.get(EXTENSION), extensions.get(EXTENSION_MANY)
        limits = hub.settings.limits
        batch = (
            (limits.batch_max_messages, limits.batch_max_bytes)
            if raw_many is not None
            and limits.batch_max_messages > 1
            and _asks_batch(scope.get("query_string", b""))
            else None
        )
        transport = ASGITransport(send, asyncio.current_task(), raw, raw_many, batch)

        client = scope.get("client") or ("?", 0)
        conn = hub.new_connection(client_id, transport, peer=f"{client[0]}:{client[1]}")
        if principal is not None:
            conn.meta["principal"] = principal
        node = hub.node
        node.connect(conn)
        welcome: dict[str, Any] = {
            "type": "welcome",
            "client_id": client_id,
            "node": hub.node_id,
            "heartbeat": hub.settings.heartbeat.interval,
            "max_frame": limits.max_frame,
        }
        if batch is not None:
            welcome["batch"] = True
        # The first frame, alone in its frame (written now, not corked with what follows).
        conn.send(encode(welcome))
        conn.flush()
        logger.debug("[%s] connected from %s", client_id, conn.meta["peer"])
        try:
            await self._read_loop(conn, receive)
        except asyncio.CancelledError:
            if not transport.aborted:
                raise
            # abort(): the peer did not take our close in time; return so the
            # server drops the socket.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            node.transport_lost(conn)
            logger.debug("[%s] disconnected (%s)", client_id, conn.close_code)

    async def _read_loop(self, conn: Connection, receive: Any) -> None:
        node = self.hub.node
        binary = self.hub.binary_handler
        limits = self.hub.settings.limits
        # The hub's own frame cap, whatever the server's is: under `wirehub serve`
        # the WebSocket layer closes 1009 first; under another server (or uvicorn
        # with its 16 MiB default) a bigger message reaches us and closes the same way.
        cap = self.hub.settings.server.ws_max_size
        limiter = (
            FrameLimiter(
                limits.rate,
                limits.burst,
                abuse_limit=limits.abuse_limit,
                abuse_window=limits.abuse_window,
                bytes_rate=limits.bytes_rate,
                bytes_burst=limits.bytes_burst,
            )
            if limits.rate > 0 or limits.bytes_rate > 0
            else None
        )
        loop_time = asyncio.get_running_loop().time
        handled, started = 0, 0.0
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if not handled:
                    started = loop_time()
                body = message.get("text") or message.get("bytes") or b""
                if len(body) > cap // 4 and _over_cap(body, cap):
                    if conn.close_code is None:
                        node.errors["too_large"] += 1
                        logger.info("[%s] closed: a message over server.ws_max_size", conn.id)
                        node.disconnect(
                            conn, CloseCode.TOO_BIG, f"message over the {cap}-byte limit"
                        )
                    continue
                wait: float | None = 0.0
                if limiter is not None:
                    if "bytes" in message and message["bytes"] is not None:
                        # Upload chunks are paced by the byte rate, never refused by it.
                        wait = limiter.pace(len(body))
                    else:
                        wait = 0.0 if limiter.allow(len(body)) else None
                if wait:
                    await asyncio.sleep(wait)  # stop reading: the sender slows down
                if wait is None:
                    # Over the rate: dropped unread (no ref), answered with rate_limited;
                    # persistent abuse closes the connection (4029). Frames that
                    # arrive while the close is under way are ignored.
                    assert limiter is not None  # wait is None only from limiter.allow
                    if conn.close_code is None:
                        node.reject(conn, limiter.error())
                        if limiter.abusive:
                            logger.info(
                                "[%s] closed: %d frames over the rate limit",
                                conn.id,
                                limiter.rejected,
                            )
                            node.disconnect(
                                conn, CloseCode.RATE_LIMITED, "too many frames over the rate limit"
                            )
                    continue
                text = message.get("text")
                if text is not None:
                    await node.handle(conn, text)
                else:
                    data = message.get("bytes") or b""
                    # Any frame answers a heartbeat, upload chunks included.
                    conn.last_seen = time.monotonic()
                    conn.ping_sent = None
                    if binary is None:
                        node.reject(
                            conn, BadRequest("binary frame received but no upload is in progress")
                        )
                    else:
                        await binary(conn, data)
                # Fairness: other readers get a turn after a bounded batch of this
                # one's frames (what one read brought in). Handling a batch in one
                # pass is what gives write coalescing something to coalesce: the
                # frames of the batch's publishes leave in one write per member.
                handled += 1
                if handled >= READ_BATCH or loop_time() - started >= READ_BUDGET:
                    handled = 0
                    await asyncio.sleep(0)
            elif kind == "websocket.disconnect":
                return


def _adopt_uvicorn(hub: Hub, config: Any) -> list[str]:
    """:func:`wirehub.web.uvicorn_protocols.embed.adopt`, imported when it runs: an app
    under another server never loads uvicorn."""
    from wirehub.web.uvicorn_protocols.embed import adopt

    return adopt(hub, config)


def _asks_batch(query: bytes) -> bool:
    """Whether the URL asks for batched frames (``batch=1`` or ``batch=true``)."""
    if b"batch=" not in query:
        return False
    values = parse_qs(query.decode("latin-1")).get("batch", [])
    return bool(values) and values[-1].lower() in ("1", "true")


def _over_cap(body: str | bytes, cap: int) -> bool:
    """Whether a message is over ``cap`` bytes (a text one measured in UTF-8)."""
    size = len(body)
    if isinstance(body, str) and size <= cap:
        size = len(body.encode())
    return size > cap


class WebSocketShortcut:
    """ASGI middleware: hand WebSocket connections to ``path`` straight to the endpoint."""

    def __init__(self, app: Any, *, endpoint: WebSocketEndpoint, path: str = "/ws") -> None:
        self.app = app
        self.endpoint = endpoint
        self.path = path

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("path") == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
