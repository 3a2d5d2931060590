"""The ``uploads`` hub component: WebSocket frames in, verified files (and jobs) out.

Protocol (docs/jobs.md has the full text)::

    upload.start {name, size, sha256, job?, args?, upload_id?}
        → upload.ready {upload_id, offset, chunk_size}
    <binary frame>            → upload.ack {upload_id, offset}
    upload.finish {upload_id} → upload.complete {upload_id, job_id?}

Binary frames carry raw chunk bytes with no header: they belong to the
connection's *active* upload, the one named by its latest ``upload.start``
(a connection may hold up to ``max_concurrent`` unfinished uploads and
switches between them by sending ``upload.start`` with the ``upload_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import TYPE_CHECKING

from wirehub.core.connection import Connection
from wirehub.core.protocol import Frame, encode, error_frame, req_str
from wirehub.errors import BadRequest, Conflict, LimitExceeded, NotFound, WirehubError
from wirehub.jobs.api import UploadRef, get_spec, validate_args
from wirehub.uploads.session import UploadSession, parse_start
from wirehub.uploads.stores import SpoolStore

if TYPE_CHECKING:
    from wirehub.jobs.component import Jobs

__all__ = ["Uploads"]

logger = logging.getLogger("wirehub.uploads")


class Uploads:
    """Chunked uploads over WebSocket (``hub.uploads``); see the module docstring.

    Clients drive it with frames (:meth:`~wirehub.client.HubClient.upload` does it
    all); the hub registers :meth:`ws_start`, :meth:`binary` and :meth:`ws_finish`.
    A finished upload is verified (size and sha256), moved into the spool
    directory, and handed to the named job as ``ctx.upload``. ``completed`` and
    ``bytes_received`` count what arrived.
    """

    name = "uploads"

    def __init__(
        self,
        store: SpoolStore,
        *,
        jobs: Jobs | None = None,
        max_size: int = 1024**3,
        chunk_size: int = 1024 * 1024,
        max_concurrent: int = 4,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.max_size = max_size
        self.chunk_size = chunk_size
        self.max_concurrent = max_concurrent
        self._sessions: dict[str, UploadSession] = {}
        #: upload_id → the connection that feeds it now.
        self._owner: dict[str, weakref.ref[Connection]] = {}
        #: connection → upload_id that receives its binary frames.
        self._active: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
        self._sweeper: asyncio.Task[None] | None = None
        self.completed = 0
        self.bytes_received = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Make the spool directory and start sweeping expired unfinished uploads."""
        await asyncio.to_thread(self.store.prepare)
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_loop(), name="wirehub-uploads-sweep"
        )
        logger.info("uploads ready in %s", self.store.directory)

    async def stop(self) -> None:
        """Stop sweeping; unfinished uploads stay on disk, so a client can resume them."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        logger.info(
            "uploads stopped: %d completed, %d bytes received, %d unfinished kept for resume",
            self.completed,
            self.bytes_received,
            len(self._sessions),
        )

    def readiness(self) -> dict[str, bool]:
        """``{"uploads": ...}`` for ``/readyz``: started and the spool directory writable."""
        return {"uploads": self._sweeper is not None and self.store.writable()}

    # -- frames ------------------------------------------------------------------

    async def ws_start(self, conn: Connection, frame: Frame) -> Frame:
        """``upload.start`` → ``upload.ready {upload_id, offset, chunk_size}``.

        A named job and its arguments are checked before any byte is sent; with
        ``upload_id`` it resumes that upload from the offset already stored.
        """
        request = parse_start(frame, max_size=self.max_size)
        if request.job is not None:
            spec = get_spec(request.job)  # unknown job: not_found before any byte
            validate_args(spec, request.args)
        if request.upload_id is None:
            if self._open_count(conn) >= self.max_concurrent:
                raise LimitExceeded(
                    f"a connection may have at most {self.max_concurrent} unfinished uploads",
                    limit=self.max_concurrent,
                )
            session = UploadSession.new(request, chunk_size=self.chunk_size)
            await asyncio.to_thread(self.store.create, session.meta())
            self._sessions[session.upload_id] = session
            logger.debug(
                "[%s] upload %s started: %s, %d bytes",
                conn.id,
                session.upload_id,
                session.name,
                session.size,
            )
        else:
            session = await self._resume(conn, request.upload_id)
            if not session.matches(request):
                raise Conflict(
                    f"upload '{session.upload_id}' was started for another file "
                    f"({session.name}, {session.size} bytes)",
                    upload_id=session.upload_id,
                )
        self._owner[session.upload_id] = weakref.ref(conn)
        self._active[conn] = session.upload_id
        return {
            "type": "upload.ready",
            "upload_id": session.upload_id,
            "offset": session.offset,
            "chunk_size": session.chunk_size,
        }

    async def binary(self, conn: Connection, data: bytes) -> None:
        """A chunk for the connection's active upload → ``upload.ack`` or an error frame."""
        try:
            upload_id = self._active.get(conn)
            session = self._sessions.get(upload_id) if upload_id else None
            if session is None or session.finished:
                raise BadRequest("binary frame received but no upload is in progress")
            session.check_chunk(len(data))
            await asyncio.to_thread(
                self.store.write, session.upload_id, session.offset, data, session.hasher
            )
            offset = session.advance(data, hashed=True)
            self.bytes_received += len(data)
            conn.send(
                encode({"type": "upload.ack", "upload_id": session.upload_id, "offset": offset})
            )
        except WirehubError as exc:
            conn.send(error_frame(exc, None))
        except OSError as exc:
            logger.error("[%s] upload write failed: %s", conn.id, exc)
            conn.send(error_frame(WirehubError("could not store the chunk"), None))

    async def ws_finish(self, conn: Connection, frame: Frame) -> Frame | None:
        """``upload.finish`` → ``upload.complete {upload_id, size, sha256, job_id}``.

        BadRequest while bytes are missing, or if the sha256 differs (the file is
        then discarded); the job, if any, is queued after the reply.
        """
        upload_id = req_str(frame, "upload_id", max_len=64)
        session = self._sessions.get(upload_id)
        if session is None:
            raise NotFound(f"unknown upload_id '{upload_id}'", upload_id=upload_id)
        self._check_owner(conn, session)
        try:
            session.finish()
        except BadRequest:
            if session.offset >= session.size:  # all bytes, wrong digest: discard
                self._forget(conn, upload_id)
                await asyncio.to_thread(self.store.discard, upload_id)
                logger.info("[%s] upload %s discarded: checksum mismatch", conn.id, upload_id)
            raise
        record = None
        path = await asyncio.to_thread(self.store.finish, upload_id, session.name)
        self._forget(conn, upload_id)
        self.completed += 1
        ref = UploadRef(upload_id, session.name, str(path), session.size, session.sha256)
        reply: Frame = {
            "type": "upload.complete",
            "upload_id": upload_id,
            "size": session.size,
            "sha256": session.sha256,
            "job_id": None,
        }
        if session.job is not None and self.jobs is not None:
            record = self.jobs.prepare(session.job, session.args, client_id=conn.id, upload=ref)
            reply["job_id"] = record.job_id
        if (client_ref := frame.get("ref")) is not None:
            reply["ref"] = client_ref
        # upload.complete goes out before the job can report anything.
        conn.send(encode(reply))
        if record is not None and self.jobs is not None:
            await self.jobs.enqueue(record)
        logger.debug("[%s] upload %s complete: %s", conn.id, upload_id, path)
        return None

    # -- helpers -----------------------------------------------------------------

    async def _resume(self, conn: Connection, upload_id: str) -> UploadSession:
        session = self._sessions.get(upload_id)
        if session is None:
            loaded = await asyncio.to_thread(self.store.load, upload_id)
            if loaded is None:
                raise NotFound(f"unknown upload_id '{upload_id}'", upload_id=upload_id)
            meta, length, hasher = loaded
            session = UploadSession.from_meta(meta)
            session.resume(length, hasher)
            self._sessions[upload_id] = session
        self._check_owner(conn, session)
        return session

    def _check_owner(self, conn: Connection, session: UploadSession) -> None:
        ref = self._owner.get(session.upload_id)
        owner = ref() if ref is not None else None
        if owner is not None and owner is not conn and owner.open:
            raise Conflict(
                f"upload '{session.upload_id}' is in use by another connection",
                upload_id=session.upload_id,
            )

    def _open_count(self, conn: Connection) -> int:
        count = 0
        for upload_id, ref in self._owner.items():
            session = self._sessions.get(upload_id)
            if ref() is conn and session is not None and not session.finished:
                count += 1
        return count

    def _forget(self, conn: Connection, upload_id: str) -> None:
        self._sessions.pop(upload_id, None)
        self._owner.pop(upload_id, None)
        if self._active.get(conn) == upload_id:
            del self._active[conn]

    async def _sweep_loop(self) -> None:
        interval = max(1.0, min(60.0, self.store.expire_after / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for upload_id, session in list(self._sessions.items()):
                ref = self._owner.get(upload_id)
                owner = ref() if ref is not None else None
                idle = now - session.updated_at > self.store.expire_after
                if idle and (owner is None or not owner.open):
                    self._sessions.pop(upload_id, None)
                    self._owner.pop(upload_id, None)
            try:
                await asyncio.to_thread(self.store.expire)
            except OSError as exc:
                logger.warning("upload expiry failed: %s", exc)
