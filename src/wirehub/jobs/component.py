"""The ``jobs`` hub component: owns the runner and routes job events to peers.

Runners put every event into one bounded :class:`~wirehub.jobs.buffer.EventBuffer`
(a FIFO per job; a producer that outruns delivery blocks or awaits). One
:class:`~wirehub.core.pump.Pump` drains it (the buffer is its source, with
bounds of its own) in time slices of :data:`PUMP_SLICE` seconds, yielding to
the loop between slices, round-robin across jobs, and coalesces consecutive
outputs of a job into one ``job.output`` frame with ``items``. Each resulting
event goes, in order:

* to the submitting connection as a frame (``job.progress``, ``job.output``,
  ``job.result``, ``job.failed``, ``job.cancelled``);
* into the room ``$job:<job_id>`` (every event, so a client that reconnects can
  ``join`` with ``since`` and recover what it missed);
* into ``$jobs`` as a summary (every event but ``job.output``).

Both are the hub's ordinary bounded paths (the submitter's queue, the room's
fan-out): a consumer too slow even for coalesced frames is closed as any slow
consumer is. The component gets plain callables (``publish``, ``send_frame``)
from the hub, so it knows nothing of the hub or of FastAPI.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from wirehub.core.connection import Connection
from wirehub.core.protocol import Frame, encode, req_str
from wirehub.core.pump import Pump
from wirehub.errors import WirehubError
from wirehub.jobs.api import (
    JobRecord,
    JobRunner,
    UploadRef,
    get_spec,
    import_job_modules,
    new_job_id,
    validate_args,
)
from wirehub.jobs.buffer import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENTS,
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    OUTPUT,
    EventBuffer,
    coalesce,
)

__all__ = ["DIRECT_EVENTS", "JOBS_ROOM", "PUMP_SLICE", "Jobs", "job_room"]

logger = logging.getLogger("wirehub.jobs")

#: Summary events of every job.
JOBS_ROOM = "$jobs"
#: Events sent straight to the submitter (the room gets every event).
DIRECT_EVENTS = frozenset(
    {"job.progress", "job.output", "job.result", "job.failed", "job.cancelled"}
)
#: The pump yields to the event loop after draining for this many seconds.
PUMP_SLICE = 0.002


def job_room(job_id: str) -> str:
    return f"$job:{job_id}"


class Jobs:
    """Submit, cancel and watch jobs; the same API whatever the runner."""

    name = "jobs"

    def __init__(
        self,
        runner: JobRunner,
        *,
        publish: Callable[[str, Any], Awaitable[int]],
        send_frame: Callable[[str, Frame], bool],
        modules: list[str] | tuple[str, ...] = (),
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        batch_items: int = MAX_BATCH_ITEMS,
        batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.runner = runner
        self.modules = tuple(modules)
        self._publish = publish
        self._send_frame = send_frame
        self.max_events = max_events
        self.max_bytes = max_bytes
        #: Events waiting for the pump: ``max_events`` outputs / ``max_bytes`` per job.
        self.buffer = self._new_buffer()
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        #: The one consumer of the buffer (it keeps its own bounds: the pump only drains it).
        self._pump: Pump[list[dict[str, Any]]] = Pump(
            self._deliver_run, take=self._take, budget=PUMP_SLICE, name="wirehub-jobs"
        )
        self.submitted = 0
        #: Frames the pump delivered, and the outputs they carried.
        self.frames = 0
        self.outputs = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Import the ``[jobs] modules`` (their ``@job`` run), start the pump and runner."""
        import_job_modules(self.modules)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.buffer = self._new_buffer()  # a fresh one: stop() closed the last
        self._pump.start()
        await self.runner.start(self.buffer)
        logger.info("jobs ready (runner %s, modules %s)", self.runner.name, list(self.modules))

    async def stop(self) -> None:
        """Stop the runner (its own rules for running jobs), deliver its last events."""
        await self.runner.stop()
        # Let the pump deliver the runner's last events, then stop it.
        await self._pump.close(timeout=2.0)
        # Abandoned producers still waiting for room give up.
        self.buffer.close_all()
        logger.info(
            "job events: %d frames delivered (%d outputs), producers waited %d times, "
            "%d late events dropped",
            self.frames,
            self.outputs,
            self.buffer.waits,
            self.buffer.dropped,
        )

    def readiness(self) -> dict[str, bool]:
        """``{"jobs": ...}`` for ``/readyz``: the runner takes work (Celery: it listens)."""
        return self.runner.readiness()

    # -- API -------------------------------------------------------------------

    def prepare(
        self,
        job: str,
        args: Any = None,
        *,
        client_id: str | None = None,
        upload: UploadRef | None = None,
    ) -> JobRecord:
        """Validate and build the record (NotFound / BadRequest); nothing runs yet."""
        spec = get_spec(job)
        clean = validate_args(spec, args)
        return JobRecord(
            job_id=new_job_id(),
            job=spec.name,
            args=clean,
            client_id=client_id,
            upload=asdict(upload) if upload else None,
        )

    async def enqueue(self, record: JobRecord) -> None:
        """Queue a record made by :meth:`prepare` (Conflict when the runner is full)."""
        self.submitted += 1
        await self.runner.submit(record)

    async def submit(
        self,
        job: str,
        args: Any = None,
        client_id: str | None = None,
        *,
        upload: UploadRef | None = None,
    ) -> str:
        """Validate and queue a job; returns its id. Events go to ``client_id`` if given.

        The arguments are checked against the job's signature first (BadRequest
        naming each bad field, NotFound for an unknown job), so nothing is queued
        that cannot run. Every event also goes to the room ``$job:<job_id>``.
        """
        record = self.prepare(job, args, client_id=client_id, upload=upload)
        await self.enqueue(record)
        return record.job_id

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job and return its record once the cancel took effect.

        A queued job never runs; a running one sees ``ctx.cancelled`` and has
        ``cancel_grace`` seconds to return. NotFound for an unknown id, Conflict
        for a job already finished.
        """
        return await self.runner.cancel(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record (state, progress, result or error); None when unknown.

        Finished jobs are kept ``result_ttl`` seconds, so a client that lost the
        live events can still read the outcome (``GET /api/jobs/{id}`` shows this).
        """
        return await self.runner.get(job_id)

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Known jobs, newest first, optionally only those in ``state`` (``"running"``…)."""
        return await self.runner.list(state, limit)

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The job's events so far, oldest first (each a frame with ``type``).

        What a late watcher needs to redraw a job's progress and outputs; the
        runner keeps a bounded number per job. NotFound for an unknown id.
        """
        return await self.runner.events(job_id)

    # -- WebSocket handlers (registered by the hub) ----------------------------

    async def ws_submit(self, conn: Connection, frame: Frame) -> Frame | None:
        """``job.submit {job, args}`` → ``job.accepted {job_id}``, then the events."""
        name = req_str(frame, "job", max_len=200)
        record = self.prepare(name, frame.get("args"), client_id=conn.id)
        reply: Frame = {"type": "job.accepted", "job_id": record.job_id, "job": record.job}
        if (ref := frame.get("ref")) is not None:
            reply["ref"] = ref
        # The acceptance goes out before the job can report anything.
        conn.send(encode(reply))
        try:
            await self.enqueue(record)
        except WirehubError as exc:
            self.buffer.put(_failed_to_queue(record, exc))
        return None

    async def ws_cancel(self, conn: Connection, frame: Frame) -> Frame:
        """``job.cancel {job_id}`` → ``job.cancelled {job_id, state}`` once it took effect."""
        job_id = req_str(frame, "job_id", max_len=64)
        record = await self.cancel(job_id)
        return {"type": "job.cancelled", "job_id": job_id, "state": str(record.state)}

    # -- event routing ----------------------------------------------------------

    def _new_buffer(self) -> EventBuffer:
        return EventBuffer(
            max_events=self.max_events, max_bytes=self.max_bytes, on_ready=self._ready
        )

    def _ready(self) -> None:
        """The buffer got events: wake the pump (from any thread)."""
        if threading.get_ident() == self._loop_thread:
            self._pump.wake()
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: the hub is gone
                self._loop.call_soon_threadsafe(self._pump.wake)

    def _take(self) -> builtins.list[dict[str, Any]] | None:
        """The pump's source: the next run of one job (round-robin), None when none waits."""
        return self.buffer.take(self.batch_items, self.batch_bytes)

    async def _deliver_run(self, run: builtins.list[dict[str, Any]]) -> None:
        event = coalesce(run)
        try:
            await self._deliver(event)
        except Exception:
            logger.exception("could not deliver job event %s", event.get("type"))

    async def _deliver(self, event: dict[str, Any]) -> None:
        client_id = event.pop("client_id", None)
        kind = event["type"]
        self.frames += 1
        if kind == OUTPUT:
            self.outputs += len(event["items"]) if "items" in event else 1
        if client_id and kind in DIRECT_EVENTS:
            self._send_frame(client_id, event)
        await self._publish(job_room(event["job_id"]), event)
        if kind != OUTPUT:
            summary = {k: v for k, v in event.items() if k not in ("result", "data")}
            await self._publish(JOBS_ROOM, summary)


def _failed_to_queue(record: JobRecord, exc: WirehubError) -> dict[str, Any]:
    return {
        "type": "job.failed",
        "job_id": record.job_id,
        "error": {"type": type(exc).__name__, "message": f"could not queue the job: {exc}"},
        "state": "failed",
        "client_id": record.client_id,
    }
