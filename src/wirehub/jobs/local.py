"""The embedded runner: jobs run inside the hub process (the default).

Where a job runs depends on its function:

* ``async def`` jobs run as tasks on the hub's event loop (they must not block);
* plain functions run in a thread pool;
* ``cpu=True`` functions run in their own process (a forkserver child), so a
  CPU-bound job neither holds the GIL of the hub nor survives a hard stop.

A job's events wait in the hub's bounded buffer (:mod:`wirehub.jobs.buffer`)
until they are delivered: a thread blocks in ``ctx.output`` while the buffer
is full, so does a process's relay thread, whose pipe then fills and blocks
the child; an async job awaits ``ctx.aoutput``.

At most ``concurrency`` jobs run at once; the rest wait in FIFO order.
Cancelling sets ``ctx.cancelled`` and waits ``cancel_grace`` seconds for the
job to return; then async jobs are cancelled and processes killed. A thread
cannot be killed: it is abandoned (the job is marked cancelled, whatever it
returns later is dropped). A timeout stops the job the same way at once.
Finished records are kept ``result_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from wirehub.errors import BufferFull, Conflict, JobFailure, NotFound
from wirehub.jobs.api import (
    EventSink,
    JobContext,
    JobRecord,
    JobSpec,
    JobState,
    UploadRef,
    get_spec,
    python_args,
)
from wirehub.jobs.buffer import SYNC_SLACK, event_size
from wirehub.jobs.process import mp_context, process_main, relay

__all__ = ["JobFailure", "LocalRunner", "check_json", "error_dict"]

logger = logging.getLogger("wirehub.jobs")

#: Events kept per job for ``GET /api/jobs/{id}/events``.
MAX_EVENTS_PER_JOB = 1000


@dataclass
class _Active:
    record: JobRecord
    spec: JobSpec
    flag: Any  # threading.Event or multiprocessing.Event: ctx.cancelled
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def error_dict(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, JobFailure):
        return {"type": exc.type_name, "message": exc.message}
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}


def check_json(result: Any) -> Any:
    """A result must travel as JSON: fail the job clearly if it cannot."""
    try:
        orjson.dumps(result)
    except TypeError as exc:
        raise JobFailure("TypeError", f"the job's result is not JSON-serializable: {exc}") from None
    return result


class LocalRunner:
    """In-process runner; see the module docstring."""

    name = "local"

    def __init__(
        self,
        *,
        concurrency: int = 4,
        result_ttl: float = 3600.0,
        cancel_grace: float = 5.0,
        max_records: int = 10_000,
    ) -> None:
        self.concurrency = concurrency
        self.result_ttl = result_ttl
        self.cancel_grace = cancel_grace
        self.max_records = max_records
        self._records: dict[str, JobRecord] = {}
        #: Per job: the last MAX_EVENTS_PER_JOB events as (time queued, event).
        self._events: dict[str, collections.deque[tuple[float, dict[str, Any]]]] = {}
        self._expires: dict[str, float] = {}
        self._queue: collections.deque[_Active] = collections.deque()
        self._active: dict[str, _Active] = {}
        self._sink: EventSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._pipes: ThreadPoolExecutor | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False
        self.completed = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        # A few spare threads: an abandoned (cancelled) sync job keeps its thread.
        self._threads = ThreadPoolExecutor(self.concurrency + 4, thread_name_prefix="wirehub-job")
        self._pipes = ThreadPoolExecutor(self.concurrency, thread_name_prefix="wirehub-jobpipe")
        self._sweeper = self._loop.create_task(self._sweep_loop(), name="wirehub-jobs-sweep")
        self._running = True

    async def stop(self) -> None:
        """1. drop queued jobs, 2. cancel running ones (grace, then hard stop), 3. pools."""
        if not self._running:
            return
        self._running = False
        # 1. Queued jobs will not run: mark them cancelled.
        dropped = len(self._queue)
        while self._queue:
            active = self._queue.popleft()
            self._finish(active.record, JobState.CANCELLED, error=_shutdown_error())
        # 2. Running jobs: cooperative cancel, then hard stop after the grace period.
        running = list(self._active.values())
        for active in running:
            active.cancel_requested.set()
        tasks = [a.task for a in running if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.cancel_grace + 2.0)
        # 3. Background sweep and pools (abandoned threads are left to finish).
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for pool in (self._threads, self._pipes):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "jobs runner stopped: %d queued dropped, %d running cancelled, %d completed",
            dropped,
            len(running),
            self.completed,
        )

    def readiness(self) -> dict[str, bool]:
        return {"jobs": self._running}

    # -- API -------------------------------------------------------------------

    async def submit(self, record: JobRecord) -> None:
        spec = get_spec(record.job)
        self._prune(time.monotonic())
        if len(self._records) >= self.max_records:
            raise Conflict(f"too many jobs kept ({self.max_records}); try again later")
        flag = _new_flag(spec)
        active = _Active(record, spec, flag)
        self._records[record.job_id] = record
        self._events[record.job_id] = collections.deque(maxlen=MAX_EVENTS_PER_JOB)
        self._queue.append(active)
        self._event(record, "job.queued", {"job": record.job, "attempt": record.attempts + 1})
        self._dispatch()

    async def cancel(self, job_id: str) -> JobRecord:
        record = await self.get(job_id)
        if record is None:
            raise NotFound(f"unknown job id '{job_id}'", job_id=job_id)
        if record.done:
            raise Conflict(f"job '{job_id}' already {record.state}", job_id=job_id)
        for active in self._queue:
            if active.record.job_id == job_id:
                self._queue.remove(active)
                self._finish(record, JobState.CANCELLED, error=_cancel_error())
                return record
        active = self._active[job_id]
        active.cancel_requested.set()
        if active.task is not None:
            await asyncio.wait([active.task], timeout=self.cancel_grace + 2.0)
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        expires = self._expires.get(job_id)
        if expires is not None and expires <= time.monotonic():
            self._drop(job_id)
        return self._records.get(job_id)

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        self._prune(time.monotonic())
        records = [r for r in self._records.values() if state is None or r.state == state]
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records[:limit]

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        if await self.get(job_id) is None:
            raise NotFound(f"unknown job id '{job_id}'", job_id=job_id)
        # Entries share the delivered event dicts (cheap for a flooding job);
        # the copy drops the routing key and adds the time it was queued.
        return [
            {k: v for k, v in event.items() if k != "client_id"} | {"ts": ts}
            for ts, event in list(self._events.get(job_id, ()))
        ]

    # -- scheduling ------------------------------------------------------------

    def _dispatch(self) -> None:
        loop = self._loop
        assert loop is not None
        while self._running and self._queue and len(self._active) < self.concurrency:
            active = self._queue.popleft()
            self._active[active.record.job_id] = active
            active.task = loop.create_task(
                self._run(active), name=f"wirehub-job-{active.record.job_id}"
            )

    async def _run(self, active: _Active) -> None:
        record, spec = active.record, active.spec
        try:
            while True:
                record.state = JobState.RUNNING
                record.attempts += 1
                record.started_at = time.time()
                self._event(record, "job.running", {"attempt": record.attempts})
                logger.debug(
                    "job %s (%s) attempt %d started", record.job_id, spec.name, record.attempts
                )
                outcome, value = await self._supervise(active)
                if outcome == "error" and record.attempts <= spec.retries and self._running:
                    logger.info(
                        "job %s (%s) failed (%s), retrying", record.job_id, spec.name, value
                    )
                    active.flag = _new_flag(spec)
                    continue
                break
            if outcome == "ok":
                self._finish(record, JobState.SUCCEEDED, result=value)
            elif outcome == "cancelled":
                error = _cancel_error() if self._running else _shutdown_error()
                self._finish(record, JobState.CANCELLED, error=error)
            elif outcome == "timeout":
                error = {
                    "type": "TimeoutError",
                    "message": f"job '{spec.name}' exceeded its timeout of {spec.timeout:g} s",
                }
                self._finish(record, JobState.TIMED_OUT, error=error)
            else:
                self._finish(record, JobState.FAILED, error=value)
        finally:
            self._active.pop(record.job_id, None)
            self._dispatch()

    async def _supervise(self, active: _Active) -> tuple[str, Any]:
        """Run one attempt.

        Returns ("ok", result), ("error", error dict), ("cancelled", None) or ("timeout", None).
        """
        spec = active.spec
        future, hard_stop = await self._launch(active)
        waiter = asyncio.ensure_future(active.cancel_requested.wait())
        try:
            done, _ = await asyncio.wait(
                {future, waiter}, timeout=spec.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if future in done:
                try:
                    return "ok", check_json(future.result())
                except Exception as exc:
                    return "error", error_dict(exc)
            reason = "cancelled" if waiter.done() else "timeout"
            active.flag.set()  # ctx.cancelled becomes true
            if reason == "cancelled":
                await asyncio.wait({future}, timeout=self.cancel_grace)
            if not future.done():
                logger.info("job %s (%s) %s: hard stop", active.record.job_id, spec.name, reason)
                hard_stop()
            return reason, None
        finally:
            waiter.cancel()
            if not future.done():
                future.add_done_callback(_consume)

    async def _launch(self, active: _Active) -> tuple[asyncio.Future[Any], Any]:
        """Start the function where it belongs; return its future and a hard-stop callable."""
        loop = self._loop
        assert loop is not None
        record, spec = active.record, active.spec
        if spec.cpu:
            return await self._launch_process(active)
        ctx = JobContext(
            record.job_id,
            spec.name,
            record.args,
            emit=self._loop_emitter(record) if spec.is_async else self._thread_emitter(record),
            aemit=self._async_emitter(record) if spec.is_async else None,
            cancel_flag=active.flag,
            upload=UploadRef(**record.upload) if record.upload else None,
            attempt=record.attempts,
        )
        kwargs = python_args(spec, record.args)
        if spec.is_async:
            task = loop.create_task(spec.fn(ctx, **kwargs))
            return task, task.cancel
        future = loop.run_in_executor(self._threads, lambda: spec.fn(ctx, **kwargs))
        return future, lambda: None  # threads cannot be stopped: abandoned

    async def _launch_process(self, active: _Active) -> tuple[asyncio.Future[Any], Any]:
        loop = self._loop
        assert loop is not None
        record, spec = active.record, active.spec
        mp = mp_context()
        reader, writer = mp.Pipe(duplex=False)
        proc = mp.Process(
            target=process_main,
            args=(spec.module, spec.name, record.job_id, record.args, record.upload),
            kwargs={"attempt": record.attempts, "conn": writer, "flag": active.flag},
            name=f"wirehub-job-{record.job_id[:8]}",
            daemon=True,
        )
        await asyncio.to_thread(proc.start)
        writer.close()
        emit = self._thread_emitter(record)
        future = loop.run_in_executor(self._pipes, _read_pipe, reader, proc, emit)

        def hard_stop() -> None:
            if proc.is_alive():
                proc.kill()

        return future, hard_stop

    # -- events ----------------------------------------------------------------

    # Every event of a running job is queued with ``on_accept=self._acceptor``:
    # the record and the log change under the buffer's lock, in the order the
    # events will be delivered, and not at all for an event dropped because
    # its job already ended (an abandoned thread, a killed process).

    def _thread_emitter(self, record: JobRecord) -> Any:
        """A sync job's thread, or a process's relay: block while the buffer is full."""
        sink = self._sink
        assert sink is not None
        put, accept = sink.put_blocking, self._acceptor(record)
        job_id, client_id = record.job_id, record.client_id

        def emit(kind: str, fields: dict[str, Any], size: int | None = None) -> None:
            if size is None:
                size = event_size(kind, fields)
            event = {"type": kind, "job_id": job_id, **fields, "client_id": client_id}
            put(event, size, on_accept=accept)

        return emit

    def _loop_emitter(self, record: JobRecord) -> Any:
        """A sync ``ctx.output`` from an async job: on the loop, so it must not wait."""
        sink = self._sink
        assert sink is not None
        accept = self._acceptor(record)

        def emit(kind: str, fields: dict[str, Any]) -> None:
            size = event_size(kind, fields)
            event = self._new_event(record, kind, fields)
            if kind != "job.output":
                # Progress is rate-limited by the context: it may exceed the bound.
                sink.put(event, size, on_accept=accept)
            elif not sink.offer(event, size, slack=SYNC_SLACK, on_accept=accept):
                raise BufferFull(
                    f"job '{record.job}': its event buffer is full ({SYNC_SLACK} x "
                    f"{getattr(sink, 'max_events', '?')} outputs waiting); in an async job "
                    "use 'await ctx.aoutput(...)', which waits for room"
                )

        return emit

    def _async_emitter(self, record: JobRecord) -> Any:
        """``await ctx.aoutput(...)``: wait on the loop for room."""
        sink = self._sink
        assert sink is not None
        accept = self._acceptor(record)

        async def aemit(kind: str, fields: dict[str, Any]) -> None:
            size = event_size(kind, fields)
            await sink.aput(self._new_event(record, kind, fields), size, on_accept=accept)

        return aemit

    @staticmethod
    def _new_event(record: JobRecord, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "job_id": record.job_id, **fields, "client_id": record.client_id}

    def _acceptor(self, record: JobRecord) -> Any:
        """What to do once one of this job's events is queued: log it, note progress."""
        log = self._events.get(record.job_id)
        append = log.append if log is not None else (lambda entry: None)
        clock = time.time

        def accept(event: dict[str, Any]) -> None:
            if event["type"] == "job.progress":
                record.progress = event["progress"]
                record.message = event.get("message")
            append((clock(), event))

        return accept

    def _event(self, record: JobRecord, kind: str, fields: dict[str, Any]) -> None:
        """A lifecycle event, on the loop: queued at once, never refused."""
        if self._sink is not None:
            self._sink.put(self._new_event(record, kind, fields), on_accept=self._acceptor(record))

    def _finish(
        self,
        record: JobRecord,
        state: JobState,
        *,
        result: Any = None,
        error: dict[str, str] | None = None,
    ) -> None:
        record.state = state
        record.finished_at = time.time()
        record.result = result
        record.error = error
        self.completed += 1
        self._expires[record.job_id] = time.monotonic() + self.result_ttl
        if state == JobState.SUCCEEDED:
            record.progress = 1.0
            self._event(record, "job.result", {"result": result})
        elif state == JobState.CANCELLED:
            self._event(record, "job.cancelled", {"state": str(state), "error": error})
        else:
            self._event(record, "job.failed", {"error": error, "state": str(state)})
        logger.info(
            "job %s (%s) %s after %d attempt(s)", record.job_id, record.job, state, record.attempts
        )

    # -- result TTL --------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = max(0.5, min(30.0, self.result_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            self._prune(time.monotonic())

    def _prune(self, now: float) -> None:
        for job_id in [j for j, t in self._expires.items() if t <= now]:
            self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        self._expires.pop(job_id, None)
        self._records.pop(job_id, None)
        self._events.pop(job_id, None)


def _cancel_error() -> dict[str, str]:
    return {"type": "Cancelled", "message": "the job was cancelled"}


def _shutdown_error() -> dict[str, str]:
    return {"type": "Cancelled", "message": "the hub shut down before the job finished"}


def _consume(future: asyncio.Future[Any]) -> None:
    # An abandoned job finished later: read its outcome so nothing is logged as lost.
    if not future.cancelled():
        future.exception()


def _new_flag(spec: JobSpec) -> Any:
    return mp_context().Event() if spec.cpu else threading.Event()


def _read_pipe(reader: Any, proc: Any, emit: Any) -> Any:
    """Thread: relay a job process's events; return its result or raise its error."""
    outcome, value = relay(reader, proc, emit)  # emit blocks while the buffer is full
    if outcome == "result":
        return value
    if outcome == "lost":
        raise JobFailure("WorkerLost", f"the job process exited with code {value}")
    raise JobFailure(*value)
