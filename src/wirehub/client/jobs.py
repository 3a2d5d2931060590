"""Jobs from the client side: :class:`JobHandle`, the routing of job frames, one-call helpers.

A :class:`~wirehub.client.HubClient` routes every ``job.*`` frame to the handle
of its ``job_id`` (:class:`JobTracker`); frames that beat their handle (the
hub may send progress before the client registered the id) wait, bounded, and
are replayed when it is registered.

:func:`submit_job` and :func:`follow_job` are what ``wirehub jobs submit
--follow`` uses: one connection per call, every job event to a callback, the
job's final event back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from wirehub.client.errors import Disconnected, JobFailed
from wirehub.client.subscription import call_safely

if TYPE_CHECKING:
    from wirehub.client.connection import HubClient

__all__ = [
    "FINAL_EVENTS",
    "JOB_EVENTS",
    "JobHandle",
    "JobTracker",
    "OnEvent",
    "follow_job",
    "output_items",
    "submit_job",
]

logger = logging.getLogger("wirehub.client")

#: The events that end a job.
FINAL_EVENTS = frozenset({"job.result", "job.failed", "job.cancelled"})
#: Frame types delivered to a job's handle (matched by ``job_id``).
JOB_EVENTS = frozenset({"job.queued", "job.running", "job.progress", "job.output", *FINAL_EVENTS})
#: Job frames kept for job ids not registered yet (they may beat their reply).
ORPHAN_LIMIT = 256

OnEvent = Callable[[dict[str, Any]], Any]


def output_items(frame: dict[str, Any]) -> list[Any]:
    """The outputs a ``job.output`` frame carries, in order: its ``items``, or its one ``data``.

    The hub coalesces consecutive outputs of a job into one frame with ``items``.
    """
    items = frame.get("items")
    return items if isinstance(items, list) else [frame.get("data")]


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
    #: Every job frame of this job, as it arrived (``job.accepted`` first for ``submit``).
    on_event: OnEvent | None = None
    #: The frame that ended the job (``job.result``, ``job.failed``, ``job.cancelled``).
    final: dict[str, Any] | None = None
    _done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def __await__(self) -> Generator[Any, None, Any]:
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
        if self.on_event is not None:
            call_safely(self.on_event, frame)
        if kind == "job.running":
            self.state = "running"
        elif kind == "job.progress":
            self.state = "running"
            self.progress = float(frame.get("progress") or 0.0)
            self.message = frame.get("message")
            if self.on_progress is not None:
                call_safely(self.on_progress, self.progress, self.message)
        elif kind == "job.output":
            for item in output_items(frame):
                self.outputs.append(item)
                if self.on_output is not None:
                    call_safely(self.on_output, item)
        elif kind == "job.result":
            self.state = "succeeded"
            self.progress = 1.0
            self._finish(frame)
            if not self._done.done():
                self._done.set_result(frame.get("result"))
        elif kind in ("job.failed", "job.cancelled"):
            self.state = str(frame.get("state") or kind.removeprefix("job."))
            self._finish(frame)
            if not self._done.done():
                error = frame.get("error")
                if isinstance(error, dict) and "message" in error:
                    text = f"{error.get('type', 'Error')}: {error['message']}"
                else:
                    text = error if isinstance(error, str) else orjson.dumps(error).decode()
                self._done.set_exception(
                    JobFailed(f"job {self.job_id} {self.state}: {text}", state=self.state)
                )
                # Read by result() or not at all: never "exception was never retrieved".
                self._done.exception()

    def _finish(self, frame: dict[str, Any]) -> None:
        if self.final is None:
            self.final = frame


class JobTracker:
    """Job frames → handles by ``job_id``; early frames wait (at most ``ORPHAN_LIMIT``)."""

    def __init__(self) -> None:
        self.handles: dict[str, JobHandle] = {}
        self._orphans: deque[dict[str, Any]] = deque(maxlen=ORPHAN_LIMIT)

    def register(self, handle: JobHandle) -> JobHandle:
        """Track ``handle`` and feed it the frames of its job that already arrived."""
        self.handles[handle.job_id] = handle
        for orphan in [f for f in self._orphans if f.get("job_id") == handle.job_id]:
            self._orphans.remove(orphan)
            handle._feed(orphan)
        if handle.done:
            self.handles.pop(handle.job_id, None)
        return handle

    def feed(self, frame: dict[str, Any]) -> None:
        """Route one job frame to its handle (or keep it until the handle exists)."""
        handle = self.handles.get(str(frame.get("job_id")))
        if handle is None:
            self._orphans.append(frame)
            return
        handle._feed(frame)
        if handle.done:
            self.handles.pop(handle.job_id, None)


async def follow_job(
    client: HubClient, job: JobHandle | str, on_event: OnEvent | None = None
) -> dict[str, Any]:
    """Wait for the job's final event (``job.result``, ``job.failed`` or ``job.cancelled``).

    ``on_event`` gets each later job frame. The hub sends a job's events to its
    submitter's connection, so a drop could lose some: the wait then fails with
    :class:`~wirehub.client.Disconnected` rather than hang.
    """
    handle = job if isinstance(job, JobHandle) else client.follow(job, on_event=on_event)
    if on_event is not None and handle.on_event is None:
        handle.on_event = on_event
    if handle.final is not None:
        return handle.final
    lost = asyncio.get_running_loop().create_future()

    def on_disconnect(frame: dict[str, Any]) -> None:
        if not lost.done():
            lost.set_result(frame)

    off = client.on("disconnect", on_disconnect)
    try:
        await asyncio.wait([handle._done, lost], return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        with contextlib.suppress(ValueError):
            off()
    if handle.final is None:
        frame = lost.result() if lost.done() and not lost.cancelled() else {}
        raise Disconnected(
            f"connection lost while following job {handle.job_id} "
            f"({frame.get('code')} {frame.get('reason', '')})".strip()
        )
    return handle.final


async def submit_job(
    url: str,
    job: str,
    args: dict[str, Any] | None = None,
    *,
    on_event: OnEvent | None = None,
    follow: bool = True,
    **client_options: Any,
) -> dict[str, Any]:
    """Submit ``job`` over one connection; with ``follow`` wait for its final event.

    Returns ``job.accepted`` without ``follow``, else the final event; ``on_event``
    gets ``job.accepted`` and every job frame after it. A refusal (unknown job, bad
    arguments) raises the :mod:`wirehub.errors` class of its code.
    ``client_options`` go to :class:`~wirehub.client.HubClient` (``token=...``).
    """
    from wirehub.client.connection import HubClient

    client_options.setdefault("reconnect", False)
    accepted: dict[str, Any] = {}

    def record(frame: dict[str, Any]) -> None:
        if frame.get("type") == "job.accepted":
            accepted.update(frame)
        if on_event is not None:
            on_event(frame)

    async with HubClient(url, **client_options) as client:
        handle = await client.submit(job, args, on_event=record)
        if not follow:
            return accepted
        return await follow_job(client, handle)
