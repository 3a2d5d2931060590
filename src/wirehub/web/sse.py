"""Server-Sent Events: a room's (or a job's) messages as a ``text/event-stream``.

``GET /api/rooms/{room}/events`` and ``GET /api/jobs/{id}/events`` (with
``Accept: text/event-stream``) make the HTTP client a connection like any
other: a :class:`~wirehub.core.connection.Connection` of kind ``sse``,
registered with the node, joined to the room through the node's own ``join``
(``since`` from ``Last-Event-ID``), with the same bounded outbound queue, the
same slow-consumer close (4001) and the same handshake checks as ``/ws``
(origin, connections per IP, the token in ``Authorization: Bearer`` or
``?token=``, the room grants). docs/protocol.md ("Server-Sent Events") is the
event format.

:class:`SSETransport` is that connection's transport. Raw ASGI, like
``web/ws.py``: each frame becomes one SSE event and one ``http.response.body``
chunk sent by the connection's one writer task, so there is no second buffer
and no task per event; the connection's queue is the bound. A message's event
bytes are built once per publish, on the :class:`~wirehub.core.outbound.Outbound`
envelope, for every SSE subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Match

from wirehub.core.heartbeat import PING_FRAME
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import CLIENT_ID_RE, ROOM_RE, CloseCode, encode
from wirehub.errors import BadRequest, NotFound, Refused, WirehubError
from wirehub.jobs.component import job_room
from wirehub.web.errors import ShapedRoute, error_response, http_error
from wirehub.web.handshake import HandshakeGate

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from wirehub.core.connection import Connection
    from wirehub.hub import Hub

__all__ = [
    "MEDIA_TYPE",
    "RETRY_MS",
    "TERMINAL_JOB_EVENTS",
    "EventStream",
    "EventStreamRoute",
    "SSETransport",
    "build_sse_router",
    "event_bytes",
    "wants_event_stream",
]

logger = logging.getLogger("wirehub.sse")

MEDIA_TYPE = "text/event-stream"
#: The job events after which a job's stream ends.
TERMINAL_JOB_EVENTS = frozenset({"job.result", "job.failed", "job.cancelled"})

_MESSAGE = '{"type":"message"'
_JOINED = '{"type":"joined"'
_PING = Outbound(PING_FRAME)  # one envelope for every heartbeat: its SSE form is built once
_END = Outbound('{"type":"sse.end"}')  # queued after a finished job's replay (never sent)
#: Sent with the ``joined`` event: how long an ``EventSource`` waits before it reconnects.
RETRY_MS = 1000
_RETRY = f"retry: {RETRY_MS}\n".encode()
_FORM = "sse"  # the key of the SSE form on an envelope
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]
SendCoro = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def _event(kind: str, text: str, event_id: int | str | None = None) -> bytes:
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {kind}\ndata: {text}\n\n".encode()


def event_bytes(out: Outbound) -> bytes | None:
    """One frame as SSE bytes (None: not sent over SSE).

    A ``message`` gets ``id: <offset>`` (the frame ends with ``"offset":N}``, so
    it is not parsed); a heartbeat ping is the comment ``: ping``; a ``pong``
    and binary frames are dropped; any other frame is ``event: <type>``.
    """
    text = out.text
    if not isinstance(text, str):
        return None
    if text.startswith(_MESSAGE):
        return _event("message", text, text[text.rindex(":") + 1 : -1])
    kind = orjson.loads(text).get("type")
    if kind == "ping":
        return b": ping\n\n"
    if kind == "pong" or not isinstance(kind, str) or "\n" in kind or "\r" in kind:
        return None  # a type that would break the event's line is not sent
    return _event(kind, text)


def _chunk(out: Outbound) -> dict[str, Any] | None:
    """The ASGI body message of a frame, once per envelope (servers only read it)."""
    body = event_bytes(out)
    return None if body is None else {"type": "http.response.body", "body": body, "more_body": True}


def joined_events(text: str, since: int | None) -> bytes:
    """The ``joined`` event, and the one ``gap`` event when a resume cannot be complete.

    A fresh subscription's ``joined`` carries ``id: <room offset>``, so a
    reconnect resumes from the join even if no message came. A resume
    (``since``) that is ``recovered`` replays every missed message with its own
    id; one that is not gets exactly one ``gap`` event, whose id is the offset
    the replay (what history still has) goes on from.
    """
    if since is None:
        return _event("joined", text, orjson.loads(text)["offset"])
    joined = orjson.loads(text)
    if joined.get("recovered", True):
        return _event("joined", text)
    offset, first = int(joined["offset"]), int(joined["first_offset"])
    reset = since > offset  # the room was dropped or the hub restarted
    gap = {
        "type": "gap",
        "room": joined["room"],
        "reason": "history_reset" if reset else "history_trimmed",
        "since": since,
        "first_offset": first,
        "offset": offset,
    }
    return _event("joined", text) + _event("gap", encode(gap), offset if reset else first - 1)


async def _nothing() -> None:
    return None


class SSETransport:
    """A Connection transport over one streaming HTTP response (ASGI ``send``).

    ``job``: the stream ends after a job's terminal event (``TERMINAL_JOB_EVENTS``).
    ``ending``: the last event of a finished job whose room no longer holds its
    outcome (queued behind the replay as the :data:`_END` envelope).
    """

    kind = "sse"
    #: Frames go one by one through :meth:`send` (no corked raw writes).
    coalesces = False
    __slots__ = ("_send", "_since", "_task", "aborted", "done", "ending", "job")

    def __init__(
        self,
        send: SendCoro,
        task: asyncio.Task[Any] | None,
        *,
        since: int | None = None,
        job: bool = False,
    ) -> None:
        self._send = send
        self._task = task
        self._since = since
        self.job = job
        self.ending: bytes | None = None
        #: The response is complete: nothing more is written.
        self.done = False
        self.aborted = False

    def attach(self, send: SendCoro, task: asyncio.Task[Any] | None) -> None:
        """The response's ``send`` and the request's task, once the response starts."""
        self._send = send
        self._task = task

    def try_writelines(self, outs: list[Outbound]) -> bool:
        """Declines: an SSE chunk goes out through the server's ``send`` only."""
        return False

    def try_write(self, out: Outbound) -> bool:
        """Always declines: every event goes through :meth:`send`, from the writer task."""
        return False

    def send(self, out: Outbound) -> Coroutine[Any, Any, None]:
        if self.done:
            return _nothing()
        if out is _END:
            self.done = True
            return self._send(_last(self.ending or b""))
        text = out.text
        if isinstance(text, str) and text.startswith(_JOINED):
            body = _RETRY + joined_events(text, self._since)
            return self._send({"type": "http.response.body", "body": body, "more_body": True})
        message = out.form(_FORM, _chunk)
        if message is None:
            return _nothing()
        if self.job and _terminal(out):
            self.done = True
            return self._send(_last(message["body"]))
        return self._send(message)

    async def close(self, code: int, reason: str) -> None:
        """End the response with an ``event: close`` naming the code and reason."""
        if self.done:
            return
        self.done = True
        body = _event("close", encode({"type": "close", "code": code, "reason": reason[:120]}))
        await self._send(_last(body))

    def abort(self) -> None:
        # ASGI gives no handle on the socket: end the request's task, and the
        # server drops the connection when the app returns.
        self.aborted = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _last(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": False}


def _terminal(out: Outbound) -> bool:
    text = out.text
    if not isinstance(text, str) or not text.startswith(_MESSAGE):
        return False
    data = out.parsed(orjson.loads).get("data")
    return isinstance(data, dict) and data.get("type") in TERMINAL_JOB_EVENTS


def wants_event_stream(scope: Scope) -> bool:
    """Whether the request's ``Accept`` names ``text/event-stream`` itself."""
    for name, value in scope.get("headers") or ():
        if name == b"accept" and MEDIA_TYPE.encode() in value.lower():
            return True
    return False


class EventStreamRoute(ShapedRoute):
    """A route that matches only a request accepting ``text/event-stream``.

    ``GET /api/jobs/{id}/events`` stays the JSON event log for every other
    request: the router goes on to that route when this one does not match.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not wants_event_stream(scope):
            return Match.NONE, {}
        return match, child


class EventStream(Response):
    """The streaming response of one SSE subscriber; see the module docstring."""

    def __init__(
        self,
        hub: Hub,
        conn: Connection,
        transport: SSETransport,
        room: str,
        since: int | None,
        *,
        finished: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(media_type=MEDIA_TYPE)
        self.hub, self.conn, self.transport = hub, conn, transport
        self.room, self.since, self.finished = room, since, finished
        self.on_end: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, conn, transport = self.hub, self.conn, self.transport
        node = hub.node
        # cast: Starlette types ``send`` with MutableMapping; the server's is a coroutine.
        send_coro = cast("SendCoro", send)
        transport.attach(send_coro, asyncio.current_task())
        heartbeat: _Pinger | None = None
        closed: asyncio.Future[None] | None = None
        try:
            await send_coro({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            node.connect(conn)
            heartbeat = self._schedule_ping()
            logger.debug("[%s] SSE stream of %s (since %s)", conn.id, self.room, self.since)
            try:
                await node.join(conn, self.room, self.since)
            except WirehubError as exc:  # room full, too many rooms...: say so and end
                node.reject(conn, exc)
                node.disconnect(conn, CloseCode.POLICY, exc.message)
            if self.finished is not None:
                transport.ending = _event("job", encode(self.finished))
                conn.send(_END)
            closed = asyncio.ensure_future(conn.wait_closed())
            await _until_gone(receive, closed)
        except asyncio.CancelledError:
            if not transport.aborted:
                raise
            # abort(): the peer did not take our close in time; returning lets the
            # server drop the socket.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if closed is not None:
                closed.cancel()
            node.transport_lost(conn)
            if self.on_end is not None:
                self.on_end()
            logger.debug("[%s] SSE stream ended (%s)", conn.id, conn.close_code)

    def _schedule_ping(self) -> _Pinger | None:
        """A ``: ping`` comment every ``heartbeat.interval`` seconds: one timer, no task."""
        interval = self.hub.settings.heartbeat.interval
        if interval <= 0:
            return None
        return _Pinger(self.conn, interval)


class _Pinger:
    """A timer that queues the heartbeat comment and re-arms itself while the peer is open."""

    __slots__ = ("_conn", "_handle", "_interval", "_loop")

    def __init__(self, conn: Connection, interval: float) -> None:
        self._conn = conn
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        if self._conn.open:
            self._conn.send(_PING)
            self._handle = self._loop.call_later(self._interval, self._ping)

    def cancel(self) -> None:
        self._handle.cancel()


async def _until_gone(receive: Receive, closed: asyncio.Future[None]) -> None:
    """Until the client disconnects, the response completes, or the connection closes."""
    while not closed.done():
        receiving: asyncio.Future[Any] = asyncio.ensure_future(receive())
        await asyncio.wait((receiving, closed), return_when=asyncio.FIRST_COMPLETED)
        if not receiving.done():
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            return
        if receiving.result()["type"] == "http.disconnect":
            return


def _since(request: Request, default: int | None) -> int | None:
    """``Last-Event-ID`` (header, else ``?last_event_id=``) as an offset."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise http_error(BadRequest(f"Last-Event-ID must be a message offset, got {raw[:40]!r}"))
    return int(raw)


def build_sse_router(hub: Hub) -> APIRouter:
    """The two SSE routes (outside the admin check: they take client tokens, as ``/ws``)."""
    router = APIRouter(prefix="/api", route_class=ShapedRoute)
    limits = hub.settings.limits
    gate = HandshakeGate(
        hub.auth,
        allowed_origins=hub.settings.auth.allowed_origins,
        max_per_ip=limits.max_connections_per_ip,
    )

    async def subscribe(
        request: Request, room: str, since: int | None, *, job_id: str | None = None
    ) -> Response:
        """The ``/ws`` handshake checks, then the ``join`` checks, then the stream.

        In the order a WebSocket client meets them: 503 while the hub does not
        take clients, 401/403/429 from the handshake gate, 406 without
        ``Accept: text/event-stream``, 404 for an unknown job, 403 without the
        room's grants. Nothing is registered until every check passed.
        """
        if not hub.accepting:
            return error_response(503, "unavailable", "the hub is not accepting connections")
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
        try:
            admission = gate.admit(cast("dict[str, Any]", request.scope), query)
        except Refused as refused:
            headers = {k.decode(): v.decode() for k, v in refused.headers()}
            return error_response(
                refused.status, **refused.error.to_wire(), headers=headers or None
            )
        try:
            if not wants_event_stream(request.scope):
                gate.release(admission)
                return error_response(
                    406, "bad_request", "this route answers Accept: text/event-stream"
                )
            finished = None if job_id is None else await _job_outcome(hub, job_id)
            client_id = admission.client_id or hub.generate_client_id()
            if not CLIENT_ID_RE.match(client_id):
                raise BadRequest("invalid client_id: 1-128 of A-Z a-z 0-9 _ . : @ -")
            transport = SSETransport(_nothing_send, None, since=since, job=job_id is not None)
            client = request.client
            peer = f"{client.host}:{client.port}" if client else "?:0"
            conn = hub.new_connection(client_id, transport, peer=peer)
            if admission.principal is not None:
                conn.meta["principal"] = admission.principal
            await _check_join(hub, conn, room, since)
        except BaseException as exc:
            gate.release(admission)
            if isinstance(exc, WirehubError):
                raise http_error(exc) from None
            raise
        stream = EventStream(hub, conn, transport, room, since, finished=finished)
        stream.on_end = functools.partial(gate.release, admission)
        return stream

    # With auth on, the routes take a client token (not the admin check of the other
    # /api routes): OpenAPI names the same bearer scheme.
    security: dict[str, Any] | None = {"security": [{"bearer": []}]} if hub.auth.required else None

    @router.get(
        "/rooms/{room:path}/events",
        tags=["rooms"],
        response_class=Response,
        responses={
            200: {
                "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
                "description": "The room's events, until the client goes (docs/protocol.md)",
            }
        },
        openapi_extra=security,
    )
    async def room_events(request: Request, room: str) -> Response:
        """The room's messages as Server-Sent Events (needs ``Accept: text/event-stream``).

        Each subscriber is a connection of kind ``sse``, with the ``/ws`` auth and
        the room's ``join`` grant. ``Last-Event-ID`` (or ``?last_event_id=``)
        resumes after that offset from history, or sends one ``gap`` event when it
        cannot (docs/protocol.md, "Server-Sent Events").
        """
        if not ROOM_RE.match(room):
            raise http_error(BadRequest(f"'{room}' is not a valid room name"))
        return await subscribe(request, room, _since(request, None))

    async def job_stream(request: Request, job_id: str) -> Response:
        """A job's events as Server-Sent Events, ending after its result (or error)."""
        return await subscribe(request, job_room(job_id), _since(request, 0), job_id=job_id)

    router.add_api_route(
        "/jobs/{job_id}/events",
        job_stream,
        methods=["GET"],
        tags=["jobs"],
        response_class=Response,
        route_class_override=EventStreamRoute,
        include_in_schema=False,  # the JSON route of the same path documents it
    )
    return router


async def _job_outcome(hub: Hub, job_id: str) -> dict[str, Any] | None:
    """The record of a finished job (its stream's last word if its room lost it); 404."""
    record = await hub.jobs.get(job_id)
    if record is None:
        raise NotFound(f"unknown job id '{job_id}'", job_id=job_id)
    if record.finished_at is None:
        return None
    finished = record.to_dict()
    finished.pop("upload", None)
    finished["type"] = "job"
    return finished


async def _nothing_send(message: dict[str, Any]) -> None:
    raise RuntimeError("the SSE transport wrote before its response started")


async def _check_join(hub: Hub, conn: Connection, room: str, since: int | None) -> None:
    """The checks of a WebSocket ``join`` (``Node._join_args`` / the room gate), up front."""
    node = hub.node
    if node.room_gate is not None and room.startswith(node.gated_prefix):
        await node.room_gate(conn, room, since)
    elif node.authorize is not None:
        node.authorize(conn, "join", room)
        if since is not None:
            node.authorize(conn, "history", room)
