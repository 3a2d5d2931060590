"""Python client SDK: ``HubClient`` (asyncio) and ``SyncHubClient`` (for scripts).

The client keeps one WebSocket to the hub and hides its drops: when the socket
goes away without ``close()`` being called, it reconnects with the shared
jittered backoff (:func:`wirehub.backoff.backoff`, full jitter), reuses the
same ``client_id``, and re-joins every room with ``since`` set to the last
offset it saw, so the hub replays what was missed (``joined.recovered`` tells
whether nothing was lost). Duplicates are dropped by offset.

::

    async with HubClient("ws://127.0.0.1:8000/ws", client_id="sensor-1") as hub:
        hub.on("message", lambda frame: print(frame["data"]))
        await hub.join("lobby")
        offset = await hub.publish("lobby", {"text": "hi"})  # waits for the ack

It needs no server extras: only websockets, orjson and wirehub's protocol,
backoff and errors modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from wirehub.backoff import backoff
from wirehub.core.protocol import CloseCode
from wirehub.core.tokens import REVOKED, TOKEN_EXPIRED
from wirehub.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    RateLimited,
    TooLarge,
    UnknownType,
    WirehubError,
)

__all__ = [
    "NO_RECONNECT_CODES",
    "Disconnected",
    "HubClient",
    "JobFailed",
    "JobHandle",
    "Subscription",
    "SyncHubClient",
    "TokenRevoked",
    "error_from_wire",
]

logger = logging.getLogger("wirehub.client")

T = TypeVar("T")
Callback = Callable[[dict[str, Any]], "Awaitable[None] | None"]

#: Close codes after which reconnecting would be wrong: the id is invalid, another
#: connection took it over, an operator kicked this client, or policy refused it.
NO_RECONNECT_CODES = frozenset(
    {CloseCode.BAD_CLIENT_ID, CloseCode.REPLACED, CloseCode.KICKED, CloseCode.POLICY, REVOKED}
)
TokenSource = Callable[[], "str | Awaitable[str]"]

_ERRORS: dict[str, type[WirehubError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        UnknownType,
        NotFound,
        Forbidden,
        TooLarge,
        LimitExceeded,
        RateLimited,
        Conflict,
    )
}

#: Frame types delivered to a job's handle (matched by ``job_id``).
_JOB_TYPES = frozenset({"job.progress", "job.output", "job.result", "job.failed", "job.cancelled"})
#: Job frames kept for job ids not registered yet (they may beat their reply).
_ORPHAN_LIMIT = 256


class Disconnected(WirehubError):
    """The connection went away before the hub answered (or the client is closed)."""

    code = "disconnected"


class TokenRevoked(Disconnected):
    """The hub revoked this client's token or subject (close 4403): it does not reconnect."""

    code = "revoked"


class JobFailed(WirehubError):
    """The job ended in ``failed`` (or ``cancelled``) state; ``state`` and ``error`` tell why."""

    code = "job_failed"


def error_from_wire(frame: dict[str, Any]) -> WirehubError:
    """Turn an ``error`` frame into the matching :mod:`wirehub.errors` exception."""
    code = str(frame.get("code", "internal"))
    fields = {k: v for k, v in frame.items() if k not in ("type", "ref", "code", "message")}
    cls = _ERRORS.get(code, WirehubError)
    exc = cls(str(frame.get("message", code)), **fields)
    if cls is WirehubError:
        exc.code = code
    return exc


@dataclass
class _Room:
    name: str
    #: Highest offset seen (message, joined head or own ack); re-join asks ``since`` it.
    offset: int = 0
    #: While a replay arrives: its last offset and kind ("history" or "missed").
    replay_until: int = 0
    replay_kind: str | None = None


@dataclass
class JobHandle:
    """A submitted job: ``await handle`` (or ``handle.result()``) gives its result."""

    job_id: str
    job: str
    progress: float = 0.0
    message: str | None = None
    state: str = "queued"
    outputs: list[Any] = field(default_factory=list)
    on_progress: Callable[[float, str | None], Any] | None = None
    on_output: Callable[[Any], Any] | None = None
    _done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def __await__(self) -> Iterator[Any]:
        return self._done.__await__()

    async def result(self, timeout: float | None = None) -> Any:
        """The job's result; raises :class:`JobFailed` if it failed."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    @property
    def done(self) -> bool:
        """The job ended (result, failure or cancel): awaiting the handle returns at once."""
        return self._done.done()

    def _feed(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "job.progress":
            self.state = "running"
            self.progress = float(frame.get("progress") or 0.0)
            self.message = frame.get("message")
            if self.on_progress is not None:
                _call(self.on_progress, self.progress, self.message)
        elif kind == "job.output":
            # Consecutive outputs may arrive coalesced: ``items`` (in order) or one ``data``.
            items = frame.get("items")
            for item in items if isinstance(items, list) else [frame.get("data")]:
                self.outputs.append(item)
                if self.on_output is not None:
                    _call(self.on_output, item)
        elif kind == "job.result":
            self.state = "succeeded"
            self.progress = 1.0
            if not self._done.done():
                self._done.set_result(frame.get("result"))
        elif kind in ("job.failed", "job.cancelled"):
            self.state = str(frame.get("state") or kind.removeprefix("job."))
            if not self._done.done():
                error = frame.get("error")
                if isinstance(error, dict) and "message" in error:
                    text = f"{error.get('type', 'Error')}: {error['message']}"
                else:
                    text = error if isinstance(error, str) else orjson.dumps(error).decode()
                self._done.set_exception(
                    JobFailed(f"job {self.job_id} {self.state}: {text}", state=self.state)
                )


def _call(fn: Callable[..., Any], *args: Any) -> None:
    """Run a user callback; schedule it if it is a coroutine; never let it kill the reader."""
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(_log_task_error)
    except Exception:
        logger.exception("client callback %r failed", fn)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("client callback failed", exc_info=task.exception())


def _with_client_id(url: str, client_id: str | None, token: str | None) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("client_id", "token")]
    if client_id:
        query.append(("client_id", client_id))
    if token:
        query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


class Subscription:
    """Frames of some kinds (and one room, or all) queued for ``async for``."""

    def __init__(
        self, client: HubClient, room: str | None, kinds: tuple[str, ...], maxsize: int
    ) -> None:
        self.room = room
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self._offs = [client.on(kind, self._put) for kind in kinds]

    def _put(self, frame: dict[str, Any]) -> None:
        if self.room is not None and frame.get("room") != self.room:
            return
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest rather than block the reader
        self._queue.put_nowait(frame)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._queue.get()

    async def get(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame, waiting up to ``timeout`` seconds."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def aclose(self) -> None:
        """Stop queueing frames (``async with`` calls it); what is queued can still be read."""
        for off in self._offs:
            with contextlib.suppress(ValueError):
                off()
        self._offs = []

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HubClient:
    """One logical connection to a hub that survives socket drops.

    Keyword arguments (all optional):

    - ``client_id``: reused on every reconnect (the hub's generated id otherwise).
    - ``reconnect=True``: reconnect after an unexpected close (never after
      :data:`NO_RECONNECT_CODES`); ``backoff_initial=0.2``/``backoff_cap=10``
      seconds shape the full-jitter backoff; ``max_attempts=None`` is unlimited.
    - ``request_timeout=10``: how long a request waits for its reply (and for a
      reconnect to finish before it is sent).
    - ``token``: a fixed token; ``get_token``: a callable (sync or async) returning
      a fresh one, called for every connection and on ``token.expiring`` (the
      client then sends ``refresh``), so the token never runs out. After 4401
      (expired) the client reconnects at once with a fresh token (with only a
      fixed token it stops: nothing could renew it); after 4403 (revoked) it
      stops for good and pending requests fail with :class:`TokenRevoked`.
    - A hub shutting down sends ``reconnect {delay_ms: [min, max]}`` before 1001:
      the first reconnect then waits a random delay in that window.
    """

    _refs = itertools.count(1)

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        token: str | None = None,
        get_token: TokenSource | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_cap: float = 10.0,
        max_attempts: int | None = None,
        open_timeout: float = 5.0,
        request_timeout: float = 10.0,
        max_size: int = 16 * 1024 * 1024,
        upload_window: int = 4,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.token = token
        self.get_token = get_token
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.max_attempts = max_attempts
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.max_size = max_size
        self.upload_window = max(1, upload_window)
        self.welcome: dict[str, Any] = {}
        #: Reconnects done so far (not counting the first connection).
        self.reconnects = 0
        #: Heartbeat pings of the hub answered with a pong.
        self.pings_answered = 0
        self.close_code: int | None = None
        self.close_reason = ""
        #: Why the client stopped for good, when the hub decided it (4403, 4401 without
        #: ``get_token``); None otherwise.
        self.error: WirehubError | None = None
        #: Token refreshes the hub accepted.
        self.refreshes = 0
        #: ``token.expiring`` frames received.
        self.expiry_warnings = 0
        # The hub's ``reconnect`` window (seconds) from its last shutdown notice.
        self._reconnect_window: tuple[float, float] | None = None
        self._refreshing: asyncio.Task[Any] | None = None
        self._ws: ClientConnection | None = None
        self._rooms: dict[str, _Room] = {}
        self._handlers: dict[str, list[Callback]] = {}
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], Callback | None]] = {}
        self._jobs: dict[str, JobHandle] = {}
        self._orphans: deque[dict[str, Any]] = deque(maxlen=_ORPHAN_LIMIT)
        self._uploads: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._ready = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> HubClient:
        """Open the first connection (raises if the hub cannot be reached)."""
        if self._runner is not None:
            return self
        await self._open()
        self._ready.set()
        self._runner = asyncio.create_task(self._run(), name=f"wirehub-client-{self.client_id}")
        return self

    async def close(self) -> None:
        """Close for good (code 1000); pending requests fail with :class:`Disconnected`."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner, self.open_timeout)
        for task in list(self._tasks):
            task.cancel()
        self._fail_pending(Disconnected("client closed"))
        self._closed.set()

    async def __aenter__(self) -> HubClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """The socket is up and every room re-joined (False while it reconnects)."""
        return self._ready.is_set() and self._ws is not None and not self._closing

    @property
    def rooms(self) -> dict[str, int]:
        """Joined rooms and the last offset seen in each."""
        return {name: room.offset for name, room in self._rooms.items()}

    async def wait_closed(self) -> None:
        """Until the client gave up for good (``close()``, a no-reconnect code, attempts spent)."""
        await self._closed.wait()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until the socket is up and every room re-joined."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- events ------------------------------------------------------------------------

    def on(self, kind: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(frame)`` for frames of ``kind`` ("message", "direct",
        "presence", "broadcast", "joined", "error", "*") and for the client events
        "connect", "disconnect" ({code, reason}) and "reconnect". Returns an unsubscribe."""
        self._handlers.setdefault(kind, []).append(callback)
        return lambda: self._handlers.get(kind, []).remove(callback)

    def messages(
        self,
        room: str | None = None,
        *,
        kinds: tuple[str, ...] = ("message",),
        maxsize: int = 10_000,
    ) -> Subscription:
        """Async iterator over incoming frames (by default room messages, one room or all).

        It subscribes at once, so nothing that arrives after this call is missed;
        ``aclose()`` (or ``async with``) unsubscribes."""
        return Subscription(self, room, kinds, maxsize)

    # -- requests ------------------------------------------------------------------------

    async def join(self, room: str, *, since: int | None = None) -> dict[str, Any]:
        """Join ``room``; with ``since`` the hub replays messages after that offset
        (delivered as ``message`` events right after the reply, marked
        ``replay: "history"``; those recovered after a reconnect say ``"missed"``)."""
        return await self._join(room, since, "history")

    async def _join(
        self, room: str, since: int | None, replay_kind: str, *, wait_ready: bool = True
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        state = self._rooms.get(room) or _Room(room)

        def on_joined(reply: dict[str, Any]) -> None:
            # Registered before the replayed messages are dispatched.
            if reply.get("type") == "joined":
                if since is None:
                    state.offset = max(state.offset, int(reply.get("offset", 0)))
                else:
                    state.offset = since
                    state.replay_until = int(reply.get("offset", 0))
                    state.replay_kind = replay_kind
                self._rooms[room] = state

        return await self._request(frame, hook=on_joined, wait_ready=wait_ready)

    async def leave(self, room: str) -> dict[str, Any]:
        """Leave ``room`` (returns ``left {room}``); it is not re-joined on reconnect."""
        reply = await self._request({"type": "leave", "room": room})
        self._rooms.pop(room, None)
        return reply

    async def publish(self, room: str, data: Any, *, echo: bool = False) -> int:
        """Publish and wait for the hub's ack; returns the message offset."""
        reply = await self._request({"type": "publish", "room": room, "data": data, "echo": echo})
        offset = int(reply["offset"])
        state = self._rooms.get(room)
        if state is not None and not echo:
            # Every earlier message of the room was queued to us before this ack.
            state.offset = max(state.offset, offset)
        return offset

    async def direct(self, to: str, data: Any) -> None:
        """Send ``data`` to one client (NotFound if it is not connected)."""
        await self._request({"type": "direct", "to": to, "data": data})

    async def presence(self, room: str) -> dict[str, Any]:
        """``{room, members, member_count}`` for ``room``."""
        return await self._request({"type": "presence", "room": room})

    async def ping(self) -> float:
        """Round trip time in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._request({"type": "ping"})
        return loop.time() - started

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a custom frame type (``@hub.on(kind)`` on the server) and return its reply."""
        return await self._request({"type": kind, **fields})

    async def refresh(self, token: str | None = None) -> dict[str, Any]:
        """Give the live connection a new token (``get_token()`` when none is given);
        returns ``refreshed {exp}``. Rooms the new token no longer grants are left."""
        if token is None:
            token = await self._fresh_token()
        if token is None:
            raise WirehubError("no token to refresh with (give token or get_token)")
        reply = await self._request({"type": "refresh", "token": token})
        self.token = token
        self.refreshes += 1
        return reply

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
        self,
        job: str,
        args: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[float, str | None], Any] | None = None,
        on_output: Callable[[Any], Any] | None = None,
        **fields: Any,
    ) -> JobHandle:
        """Submit a job; the handle gets ``job.progress``/``job.output`` and resolves on
        ``job.result`` (or raises :class:`JobFailed` on ``job.failed``)."""
        holder: dict[str, JobHandle] = {}

        def on_accepted(reply: dict[str, Any]) -> None:
            # Registered synchronously in the reader, before any later job frame.
            if reply.get("type") != "job.accepted":
                return
            handle = JobHandle(
                str(reply["job_id"]), job, on_progress=on_progress, on_output=on_output
            )
            self._jobs[handle.job_id] = handle
            holder["handle"] = handle
            for orphan in [f for f in self._orphans if f.get("job_id") == handle.job_id]:
                self._orphans.remove(orphan)
                handle._feed(orphan)
            if handle.done:
                self._jobs.pop(handle.job_id, None)

        frame = {"type": "job.submit", "job": job, "args": args or {}, **fields}
        await self._request(frame, hook=on_accepted)
        return holder["handle"]

    def follow(
        self,
        job_id: str,
        *,
        job: str = "",
        on_progress: Callable[[float, str | None], Any] | None = None,
        on_output: Callable[[Any], Any] | None = None,
    ) -> JobHandle:
        """A handle on a job this client started another way (``upload(job=...)``):
        its events are sent to this client; any that already arrived are replayed."""
        handle = self._jobs.get(job_id)
        if handle is None:
            handle = JobHandle(job_id, job, on_progress=on_progress, on_output=on_output)
            self._jobs[job_id] = handle
            for orphan in [f for f in self._orphans if f.get("job_id") == job_id]:
                self._orphans.remove(orphan)
                handle._feed(orphan)
            if handle.done:
                self._jobs.pop(job_id, None)
        return handle

    async def run_job(self, job: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Submit and wait for the result."""
        handle = await self.submit(job, args, **kwargs)
        return await handle

    # -- uploads ---------------------------------------------------------------------------

    async def upload(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        job: str | None = None,
        args: dict[str, Any] | None = None,
        on_progress: Callable[[int, int], Any] | None = None,
        upload_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a file (path or bytes) in binary chunks; returns ``upload.complete``
        (with ``job_id`` when ``job`` was given). Resumes from the hub's offset
        after a reconnect. ``on_progress(acked_bytes, total)``."""
        if isinstance(source, bytes):
            data = source
            name = name or "upload.bin"
        else:
            path = Path(source)
            data = await asyncio.to_thread(path.read_bytes)
            name = name or path.name
        sha256 = hashlib.sha256(data).hexdigest()
        start: dict[str, Any] = {
            "type": "upload.start",
            "name": name,
            "size": len(data),
            "sha256": sha256,
        }
        if job is not None:
            start["job"] = job
            if args:
                start["args"] = args
        attempts = 0
        while True:
            if upload_id is not None:
                start["upload_id"] = upload_id
            try:
                ready = await self._request(start)
                upload_id = str(ready["upload_id"])
                await self._send_chunks(upload_id, data, ready, on_progress)
                return await self._request({"type": "upload.finish", "upload_id": upload_id})
            except Disconnected:
                attempts += 1
                if self._closing or not self.reconnect or attempts > 5:
                    raise
                await self.wait_connected(self.request_timeout)

    async def _send_chunks(
        self,
        upload_id: str,
        data: bytes,
        ready: dict[str, Any],
        on_progress: Callable[[int, int], Any] | None,
    ) -> None:
        total = len(data)
        offset = int(ready.get("offset", 0))
        chunk = max(1, int(ready.get("chunk_size", 256 * 1024)))
        acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._uploads[upload_id] = acks
        try:
            sent = acked = offset
            if on_progress is not None:
                _call(on_progress, acked, total)
            while acked < total:
                while sent < total and sent - acked < chunk * self.upload_window:
                    ws = self._ws
                    if ws is None or not self._ready.is_set():
                        raise Disconnected("connection lost during the upload")
                    try:
                        await ws.send(data[sent : sent + chunk])
                    except ConnectionClosed:
                        raise Disconnected("connection lost during the upload") from None
                    sent += min(chunk, total - sent)
                try:
                    frame = await asyncio.wait_for(acks.get(), self.request_timeout)
                except TimeoutError:
                    raise Disconnected(f"no upload.ack within {self.request_timeout}s") from None
                if frame.get("type") == "error":
                    raise error_from_wire(frame)
                if frame.get("type") == "disconnected":
                    raise Disconnected("connection lost during the upload")
                acked = max(acked, int(frame.get("offset", acked)))
                if on_progress is not None:
                    _call(on_progress, acked, total)
        finally:
            self._uploads.pop(upload_id, None)

    # -- internals: connection ------------------------------------------------------------

    async def _fresh_token(self) -> str | None:
        """A token for the next connection or refresh: ``get_token()``, else the fixed one."""
        if self.get_token is None:
            return self.token
        token = self.get_token()
        if inspect.isawaitable(token):
            token = await token
        self.token = str(token)
        return self.token

    async def _open(self) -> None:
        token = await self._fresh_token()
        url = _with_client_id(self.url, self.client_id, token)
        ws = await connect(
            url, open_timeout=self.open_timeout, max_size=self.max_size, close_timeout=2
        )
        try:
            raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
            welcome = orjson.loads(raw)
            if welcome.get("type") != "welcome":
                raise Disconnected(f"expected a welcome frame, got {welcome.get('type')!r}")
        except BaseException:
            await ws.close()
            raise
        self.welcome = welcome
        self.client_id = str(welcome["client_id"])  # reused on every reconnect
        self._ws = ws
        logger.debug("[%s] connected to %s", self.client_id, self.url)
        self._emit("connect", welcome)

    async def _run(self) -> None:
        """Read frames; on an unexpected close, reconnect and re-join."""
        try:
            while True:
                ws = self._ws
                assert ws is not None
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        if isinstance(raw, str):
                            await self._dispatch(orjson.loads(raw))
                code = ws.close_code if ws.close_code is not None else 1006
                reason = ws.close_reason or ""
                self.close_code, self.close_reason = code, reason
                self._ready.clear()
                self._ws = None
                if code == REVOKED:
                    self._fail_pending(TokenRevoked(f"token revoked ({code} {reason})"))
                else:
                    self._fail_pending(Disconnected(f"connection closed ({code} {reason})".strip()))
                self._emit("disconnect", {"type": "disconnect", "code": code, "reason": reason})
                if self._closing or not self.reconnect:
                    return
                if code == REVOKED or (code == TOKEN_EXPIRED and self.get_token is None):
                    self._stop_for_token(code, reason)
                    return
                if code in NO_RECONNECT_CODES:
                    logger.warning(
                        "[%s] closed by the hub (%s %s): not reconnecting",
                        self.client_id,
                        code,
                        reason,
                    )
                    return
                if not await self._reconnect(immediately=code == TOKEN_EXPIRED):
                    return
        except Exception:
            logger.exception("[%s] client reader failed", self.client_id)
            self._fail_pending(Disconnected("client reader failed"))
        finally:
            self._ready.clear()
            self._closed.set()

    def _stop_for_token(self, code: int, reason: str) -> None:
        if code == REVOKED:
            self.error = TokenRevoked(f"the hub revoked this client's token ({code} {reason})")
        else:
            self.error = Disconnected(
                f"the token expired ({code} {reason}) and there is no get_token to renew it"
            )
        logger.error("[%s] %s: not reconnecting", self.client_id, self.error)
        self._fail_pending(self.error)

    async def _reconnect(self, *, immediately: bool = False) -> bool:
        delays = backoff(initial=self.backoff_initial, cap=self.backoff_cap)
        window, self._reconnect_window = self._reconnect_window, None
        attempt = 0
        while not self._closing:
            attempt += 1
            if self.max_attempts is not None and attempt > self.max_attempts:
                logger.warning("[%s] giving up after %d attempts", self.client_id, attempt - 1)
                return False
            if attempt == 1 and window is not None:
                # The hub said when to come back: spread over its window, never before.
                delay = random.uniform(*window)
            elif attempt == 1 and immediately:
                delay = 0.0  # the token expired: a fresh one fixes it, no backoff needed
            else:
                delay = next(delays)
            logger.info("[%s] reconnecting in %.2fs (attempt %d)", self.client_id, delay, attempt)
            await asyncio.sleep(delay)
            try:
                await self._open()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                logger.debug("[%s] reconnect failed: %s", self.client_id, exc)
                continue
            except Disconnected:
                continue
            self.reconnects += 1
            self._spawn(self._rejoin())
            return True
        return False

    async def _rejoin(self) -> None:
        """Re-join every room since its last offset, then let requests through."""
        for room in list(self._rooms.values()):
            try:
                reply = await self._join(room.name, room.offset, "missed", wait_ready=False)
            except Disconnected:
                return  # the next reconnect tries again
            except WirehubError as exc:
                logger.warning("[%s] re-join of %s failed: %s", self.client_id, room.name, exc)
                self._rooms.pop(room.name, None)
                continue
            if not reply.get("recovered", True):
                logger.info(
                    "[%s] %s: history no longer holds offset %d; some messages were lost",
                    self.client_id,
                    room.name,
                    room.offset + 1,
                )
        self._ready.set()
        self._emit("reconnect", {"type": "reconnect", "rooms": self.rooms})

    async def _auto_refresh(self) -> None:
        """On ``token.expiring``: fetch a fresh token and refresh the live connection."""
        try:
            await self.refresh()
        except (Disconnected, TimeoutError):
            pass  # reconnecting anyway, with a fresh token
        except Exception as exc:
            # The hub closes with 4401 at expiry; the reconnect fetches a token again.
            logger.warning("[%s] token refresh failed: %s", self.client_id, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail_pending(self, exc: WirehubError) -> None:
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(exc)
        for acks in self._uploads.values():
            acks.put_nowait({"type": "disconnected"})

    async def _request(
        self,
        frame: dict[str, Any],
        *,
        hook: Callback | None = None,
        wait_ready: bool = True,
    ) -> dict[str, Any]:
        if self._closing or (self._runner is None and wait_ready):
            raise Disconnected("client is not connected (call connect() first)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        if wait_ready and not self._ready.is_set():
            if self.error is not None:
                raise self.error
            if not self.reconnect or self._closed.is_set():
                raise Disconnected("client is not connected")
            try:
                await asyncio.wait_for(self._ready.wait(), self.request_timeout)
            except TimeoutError:
                raise Disconnected(
                    f"not reconnected within {self.request_timeout}s; {frame['type']} not sent"
                ) from None
        ws = self._ws
        if ws is None:
            raise Disconnected("client is not connected")
        ref = f"c{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[ref] = (future, hook)
        try:
            await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
            reply = await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
        except ConnectionClosed:
            raise Disconnected(f"connection lost while sending {frame['type']}") from None
        except TimeoutError:
            raise TimeoutError(
                f"no reply to {frame['type']} within {self.request_timeout}s"
            ) from None
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise error_from_wire(reply)
        return reply

    # -- internals: inbound ------------------------------------------------------------------

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send('{"type":"pong"}')
                    self.pings_answered += 1
            return
        if kind == "token.expiring":
            self.expiry_warnings += 1
            if self.get_token is not None and (self._refreshing is None or self._refreshing.done()):
                self._refreshing = asyncio.ensure_future(self._auto_refresh())
                self._tasks.add(self._refreshing)
                self._refreshing.add_done_callback(self._tasks.discard)
            self._emit("token.expiring", frame)
            return
        if kind == "reconnect":
            # The hub is shutting down: come back after a random delay in its window.
            window = frame.get("delay_ms")
            if isinstance(window, list) and len(window) == 2:
                low, high = (max(0.0, float(v) / 1000) for v in window)
                self._reconnect_window = (low, max(low, high))
            self._emit("shutdown", frame)
            return
        ref = frame.get("ref")
        if ref is not None:
            entry = self._pending.pop(str(ref), None)
            if entry is not None:
                future, hook = entry
                if hook is not None:
                    hook(frame)
                if not future.done():
                    future.set_result(frame)
                if kind == "joined":
                    self._emit("joined", frame)
                return
        if kind == "message":
            room = self._rooms.get(frame.get("room", ""))
            offset = frame.get("offset")
            if room is not None and isinstance(offset, int):
                if offset <= room.offset:
                    return  # already seen (replayed after a reconnect)
                room.offset = offset
                if room.replay_kind is not None:
                    if offset <= room.replay_until:
                        frame["replay"] = room.replay_kind
                    if offset >= room.replay_until:
                        room.replay_kind = None
        elif kind in _JOB_TYPES:
            handle = self._jobs.get(str(frame.get("job_id")))
            if handle is None:
                self._orphans.append(frame)
            else:
                handle._feed(frame)
                if handle.done:
                    self._jobs.pop(handle.job_id, None)
        elif kind == "upload.ack" or (kind == "error" and self._uploads):
            # A connection has one active upload: chunk errors carry no ref.
            acks = self._uploads.get(str(frame.get("upload_id")))
            if acks is None and kind == "error" and len(self._uploads) == 1:
                acks = next(iter(self._uploads.values()))
            if acks is not None:
                acks.put_nowait(frame)
                return
        elif kind == "error":
            logger.warning("[%s] hub error: %s", self.client_id, frame.get("message"))
        self._emit(str(kind), frame)

    def _emit(self, kind: str, frame: dict[str, Any]) -> None:
        for callback in (*self._handlers.get(kind, ()), *self._handlers.get("*", ())):
            _call(callback, frame)


class SyncHubClient:
    """Blocking facade for scripts: a :class:`HubClient` on a private event-loop thread.

    ::

        with SyncHubClient("ws://127.0.0.1:8000/ws") as hub:
            hub.join("lobby")
            print(hub.publish("lobby", {"text": "hi"}))
            print(hub.recv(timeout=5))
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._inbox: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._arrived = threading.Condition()

        async def build() -> HubClient:
            client = HubClient(url, **kwargs)
            for kind in ("message", "direct", "broadcast"):
                client.on(kind, self._put)
            return await client.connect()

        try:
            self.client: HubClient = self._call(build())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        future: ThreadFuture[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def _put(self, frame: dict[str, Any]) -> None:
        with self._arrived:
            self._inbox.append(frame)
            self._arrived.notify_all()

    @property
    def client_id(self) -> str | None:
        """The id given, else the one the hub assigned (kept across reconnects)."""
        return self.client.client_id

    def join(self, room: str, *, since: int | None = None) -> dict[str, Any]:
        """:meth:`HubClient.join`, blocking; the room's messages arrive via :meth:`recv`."""
        return self._call(self.client.join(room, since=since))

    def leave(self, room: str) -> dict[str, Any]:
        """:meth:`HubClient.leave`, blocking."""
        return self._call(self.client.leave(room))

    def publish(self, room: str, data: Any, *, echo: bool = False) -> int:
        """:meth:`HubClient.publish`, blocking until the hub's ack; returns the offset."""
        return self._call(self.client.publish(room, data, echo=echo))

    def direct(self, to: str, data: Any) -> None:
        """:meth:`HubClient.direct`, blocking (NotFound if ``to`` is not connected)."""
        self._call(self.client.direct(to, data))

    def presence(self, room: str) -> dict[str, Any]:
        """:meth:`HubClient.presence`, blocking: ``{room, members, member_count}``."""
        return self._call(self.client.presence(room))

    def run_job(
        self,
        job: str,
        args: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[float, str | None], Any] | None = None,
        on_output: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Submit and block until the result; callbacks run on the client's thread."""

        async def run() -> Any:
            handle = await self.client.submit(
                job, args, on_progress=on_progress, on_output=on_output
            )
            return await handle.result(timeout)

        return self._call(run())

    def upload(self, source: str | os.PathLike[str] | bytes, **kwargs: Any) -> dict[str, Any]:
        """:meth:`HubClient.upload`, blocking until ``upload.complete``."""
        return self._call(self.client.upload(source, **kwargs))

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Next ``message``/``direct``/``broadcast`` frame; TimeoutError if none in time."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: bool(self._inbox), timeout):
                raise TimeoutError(f"nothing received within {timeout}s")
            return self._inbox.popleft()

    def close(self) -> None:
        """Close the connection for good and stop the client's thread (``with`` does it)."""
        with contextlib.suppress(Exception):
            self._call(self.client.close(), timeout=10)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SyncHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
