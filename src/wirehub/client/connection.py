"""``HubClient``: one asyncio connection to a hub that survives socket drops.

The client keeps one WebSocket to the hub and hides its drops: when the socket
goes away without ``close()`` being called, it reconnects with the shared
jittered backoff (:func:`wirehub.backoff.backoff`, full jitter), reuses the
same ``client_id``, and re-joins every room with ``since`` set to the last
offset it saw, so the hub replays what was missed (``joined.recovered`` tells
whether nothing was lost). Duplicates are dropped by offset. The decisions
(what a close code means, which ``since``, which delay) live in
:class:`~wirehub.client.state.Recovery`; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from wirehub.client.errors import Disconnected, error_from_wire
from wirehub.client.jobs import JOB_EVENTS, JobHandle, JobTracker, OnEvent
from wirehub.client.state import Recovery
from wirehub.client.subscription import Callback, Subscription, call_safely
from wirehub.client.uploads import UploadSource, run_upload
from wirehub.client.wire import connect_url, split_frames
from wirehub.errors import WirehubError

__all__ = ["HubClient", "TokenSource"]

logger = logging.getLogger("wirehub.client")

TokenSource = Callable[[], "str | Awaitable[str]"]


class HubClient:
    """One logical connection to a hub that survives socket drops.

    Keyword arguments (all optional):

    - ``client_id``: reused on every reconnect (the hub's generated id otherwise).
    - ``reconnect=True``: reconnect after an unexpected close (never after
      :data:`~wirehub.client.NO_RECONNECT_CODES`); ``backoff_initial=0.2``/``backoff_cap=10``
      seconds shape the full-jitter backoff; ``max_attempts=None`` is unlimited.
    - ``request_timeout=10``: how long a request waits for its reply (and for a
      reconnect to finish before it is sent).
    - ``token``: a fixed token; ``get_token``: a callable (sync or async) returning
      a fresh one, called for every connection and on ``token.expiring`` (the
      client then sends ``refresh``), so the token never runs out. After 4401
      (expired) the client reconnects at once with a fresh token (with only a
      fixed token it stops: nothing could renew it); after 4403 (revoked) it
      stops for good and pending requests fail with :class:`~wirehub.client.TokenRevoked`.
    - A hub shutting down sends ``reconnect {delay_ms: [min, max]}`` before 1001:
      the first reconnect then waits a random delay in that window.
    - ``upload_window=4``: chunks of an upload in flight before waiting for an ack.
    - ``batch=False``: ask for batched frames (``batch=1``; several messages per text
      frame, split here); ``welcome["batch"]`` says whether the hub agreed.
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
        batch: bool = False,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.token = token
        self.get_token = get_token
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.max_size = max_size
        self.upload_window = max(1, upload_window)
        self.batch = batch
        self.recovery = Recovery(
            reconnect=reconnect,
            renewable_token=get_token is not None,
            backoff_initial=backoff_initial,
            backoff_cap=backoff_cap,
            max_attempts=max_attempts,
        )
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
        self._refreshing: asyncio.Task[Any] | None = None
        self._ws: ClientConnection | None = None
        self._handlers: dict[str, list[Callback]] = {}
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], Callback | None]] = {}
        self._jobs = JobTracker()
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
        """Close for good (code 1000); pending requests fail with ``Disconnected``."""
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
    def reconnect(self) -> bool:
        """Reconnect after an unexpected close (settable; the policy lives in ``recovery``)."""
        return self.recovery.reconnect

    @reconnect.setter
    def reconnect(self, value: bool) -> None:
        self.recovery.reconnect = value

    @property
    def rooms(self) -> dict[str, int]:
        """Joined rooms and the last offset seen in each."""
        return self.recovery.offsets

    @property
    def _reconnect_window(self) -> tuple[float, float] | None:
        # The hub's last ``reconnect`` window, in seconds (read by bench/reconnect_storm.py).
        return self.recovery.window

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
        "connect", "disconnect" ({code, reason}), "reconnect" and "shutdown" (the
        hub's ``reconnect`` notice). Returns an unsubscribe."""
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

        def on_joined(reply: dict[str, Any]) -> None:
            # Runs in the reader, before the replayed messages are dispatched.
            if reply.get("type") == "joined":
                head = int(reply.get("offset", 0))
                self.recovery.joined(room, since=since, head=head, replay_kind=replay_kind)

        return await self._request(frame, hook=on_joined, wait_ready=wait_ready)

    async def leave(self, room: str) -> dict[str, Any]:
        """Leave ``room`` (returns ``left {room}``); it is not re-joined on reconnect."""
        reply = await self._request({"type": "leave", "room": room})
        self.recovery.left(room)
        return reply

    async def publish(
        self, room: str, data: Any, *, echo: bool = False, idempotency_key: str | None = None
    ) -> int:
        """Publish and wait for the hub's ack; returns the message offset.

        With ``idempotency_key``, a retry of the same publish (say after a reconnect
        lost the ack) is not delivered twice: the hub answers the first offset.
        """
        frame: dict[str, Any] = {"type": "publish", "room": room, "data": data, "echo": echo}
        if idempotency_key is not None:
            frame["idempotency_key"] = idempotency_key
        reply = await self._request(frame)
        offset = int(reply["offset"])
        if not echo:
            self.recovery.acked(room, offset)
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
        on_event: OnEvent | None = None,
        **fields: Any,
    ) -> JobHandle:
        """Submit a job; the handle gets ``job.progress``/``job.output`` and resolves on
        ``job.result`` (or raises ``JobFailed`` on ``job.failed``). ``on_event`` gets
        every frame of the job as it arrives, ``job.accepted`` first."""
        holder: dict[str, JobHandle] = {}

        def on_accepted(reply: dict[str, Any]) -> None:
            # Registered synchronously in the reader, before any later job frame.
            if reply.get("type") != "job.accepted":
                return
            handle = JobHandle(
                str(reply["job_id"]),
                job,
                on_progress=on_progress,
                on_output=on_output,
                on_event=on_event,
            )
            if on_event is not None:
                call_safely(on_event, reply)
            holder["handle"] = self._jobs.register(handle)

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
        on_event: OnEvent | None = None,
    ) -> JobHandle:
        """A handle on a job this client started another way (``upload(job=...)``):
        its events are sent to this client; any that already arrived are replayed."""
        handle = self._jobs.handles.get(job_id)
        if handle is None:
            handle = JobHandle(
                job_id, job, on_progress=on_progress, on_output=on_output, on_event=on_event
            )
            self._jobs.register(handle)
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
        (with ``job_id`` when ``job`` was given). A file is streamed from disk, one
        chunk per read, at most ``upload_window`` chunks unacknowledged; after a
        reconnect the upload resumes from the hub's offset.
        ``on_progress(acked_bytes, total)``."""
        return await run_upload(
            self,
            UploadSource(source, name),
            job=job,
            args=args,
            on_progress=on_progress,
            upload_id=upload_id,
        )

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
        url = connect_url(self.url, self.client_id, token, batch=self.batch)
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
                            for frame in split_frames(raw, batched=self.batch):
                                await self._dispatch(frame)
                code = ws.close_code if ws.close_code is not None else 1006
                reason = ws.close_reason or ""
                self.close_code, self.close_reason = code, reason
                self._ready.clear()
                self._ws = None
                self._fail_pending(self.recovery.pending_error(code, reason))
                self._emit("disconnect", {"type": "disconnect", "code": code, "reason": reason})
                self.recovery.renewable_token = self.get_token is not None
                decision = self.recovery.on_close(code, reason, closing=self._closing)
                if decision.action == "stop":
                    if decision.error is not None:
                        self.error = decision.error
                        logger.error("[%s] %s: not reconnecting", self.client_id, decision.why)
                        self._fail_pending(decision.error)
                    elif not self._closing and self.reconnect:
                        logger.warning("[%s] %s: not reconnecting", self.client_id, decision.why)
                    return
                if not await self._reconnect(immediately=decision.immediately):
                    return
        except Exception:
            logger.exception("[%s] client reader failed", self.client_id)
            self._fail_pending(Disconnected("client reader failed"))
        finally:
            self._ready.clear()
            self._closed.set()

    async def _reconnect(self, *, immediately: bool = False) -> bool:
        attempt = 0
        for delay in self.recovery.delays(immediately=immediately):
            if self._closing:
                return False
            attempt += 1
            logger.info("[%s] reconnecting in %.2fs (attempt %d)", self.client_id, delay, attempt)
            await asyncio.sleep(delay)
            if self._closing:
                return False
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
        if not self._closing:
            logger.warning("[%s] giving up after %d attempts", self.client_id, attempt)
        return False

    async def _rejoin(self) -> None:
        """Re-join every room since its last offset, then let requests through."""
        for room, since in self.recovery.rejoin_plan():
            try:
                reply = await self._join(room, since, "missed", wait_ready=False)
            except Disconnected:
                return  # the next reconnect tries again
            except WirehubError as exc:
                logger.warning("[%s] re-join of %s failed: %s", self.client_id, room, exc)
                self.recovery.left(room)
                continue
            if not reply.get("recovered", True):
                logger.info(
                    "[%s] %s: history no longer holds offset %d; some messages were lost",
                    self.client_id,
                    room,
                    since + 1,
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

    def _spawn(self, coro: Any) -> asyncio.Future[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            self.recovery.shutdown_notice(frame.get("delay_ms"))
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
            if not self.recovery.message(frame):
                return  # already seen (replayed after a reconnect)
        elif kind in JOB_EVENTS:
            self._jobs.feed(frame)
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
            call_safely(callback, frame)
