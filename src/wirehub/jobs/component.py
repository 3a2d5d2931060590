"""The ``jobs`` hub component: owns the runner and routes job events to peers.

Every event a runner reports goes, in order, through one pump task:

* to the submitting connection as a frame (``job.progress``, ``job.output``,
  ``job.result``, ``job.failed``, ``job.cancelled``);
* into the room ``$job:<job_id>`` (every event, so a client that reconnects can
  ``join`` with ``since`` and recover what it missed);
* into ``$jobs`` as a summary (every event but ``job.output``).

The component gets plain callables (``publish``, ``send_frame``) from the hub,
so it knows nothing of the hub or of FastAPI.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from wirehub.core.connection import Connection
from wirehub.core.protocol import Frame, encode, req_str
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

__all__ = ["DIRECT_EVENTS", "JOBS_ROOM", "Jobs", "job_room"]

logger = logging.getLogger("wirehub.jobs")

#: Summary events of every job.
JOBS_ROOM = "$jobs"
#: Events sent straight to the submitter (the room gets every event).
DIRECT_EVENTS = frozenset(
    {"job.progress", "job.output", "job.result", "job.failed", "job.cancelled"}
)


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
    ) -> None:
        self.runner = runner
        self.modules = tuple(modules)
        self._publish = publish
        self._send_frame = send_frame
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self.submitted = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        import_job_modules(self.modules)
        self._pump = asyncio.get_running_loop().create_task(self._pump_loop(), name="wirehub-jobs")
        await self.runner.start(self._sink)
        logger.info("jobs ready (runner %s, modules %s)", self.runner.name, list(self.modules))

    async def stop(self) -> None:
        await self.runner.stop()
        if self._pump is not None:
            # Let the pump deliver the runner's last events, then stop it.
            self._wakeup.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), 2.0)
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    def readiness(self) -> dict[str, bool]:
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
        """Validate and queue a job; returns its id. Events go to ``client_id`` if given."""
        record = self.prepare(job, args, client_id=client_id, upload=upload)
        await self.enqueue(record)
        return record.job_id

    async def cancel(self, job_id: str) -> JobRecord:
        return await self.runner.cancel(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.runner.get(job_id)

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        return await self.runner.list(state, limit)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
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
            self._sink(_failed_to_queue(record, exc))
        return None

    async def ws_cancel(self, conn: Connection, frame: Frame) -> Frame:
        """``job.cancel {job_id}`` → ``job.cancelled {job_id, state}`` once it took effect."""
        job_id = req_str(frame, "job_id", max_len=64)
        record = await self.cancel(job_id)
        return {"type": "job.cancelled", "job_id": job_id, "state": str(record.state)}

    # -- event routing ----------------------------------------------------------

    def _sink(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        self._wakeup.set()

    async def _drained(self) -> None:
        while self._pending:
            await asyncio.sleep(0.01)

    async def _pump_loop(self) -> None:
        pending = self._pending
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while pending:
                event = pending.popleft()
                try:
                    await self._deliver(event)
                except Exception:
                    logger.exception("could not deliver job event %s", event.get("type"))

    async def _deliver(self, event: dict[str, Any]) -> None:
        client_id = event.pop("client_id", None)
        kind = event["type"]
        if client_id and kind in DIRECT_EVENTS:
            self._send_frame(client_id, event)
        await self._publish(job_room(event["job_id"]), event)
        if kind != "job.output":
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
