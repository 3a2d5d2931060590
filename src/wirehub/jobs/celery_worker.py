"""Worker side of the Celery runner: what a ``wirehub.run_job`` task does in ``wirehub worker``.

The worker moves the job record through its states (the Lua transition in
:mod:`wirehub.jobs.celery_common`), runs the function in a thread, refreshes
its lease, watches the cancel flag and enforces the timeout.

A job's events leave through a :class:`_Flusher`: a bounded buffer
(:class:`~wirehub.jobs.buffer.EventBuffer`, the same bounds as the hub's), so
``ctx.output`` blocks the job's thread while it is full, and one thread that
publishes them in order, consecutive outputs coalesced into one ``job.output``
with ``items``. The flusher is paced by the hubs: each output batch goes out
with the name of a *credit* list; every hub that took the batch into its own
bounded buffer pushes one entry there; the worker keeps at most
:data:`CREDIT_WINDOW` batches unacknowledged (counting the subscribers
``PUBLISH`` reported) and waits (``BLPOP``) for credit beyond that. A hub
behind therefore slows the job down instead of piling events up in Redis.
Credits are pooled across hubs, so with ``H`` hubs the slowest may trail by up
to ``H x CREDIT_WINDOW`` batches. If no credit comes for ``credit_timeout``
seconds (a hub died mid-batch), the worker stops waiting for that debt and
goes on, logging it; events are never dropped by the worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from wirehub.errors import NotFound, WirehubError
from wirehub.jobs.api import (
    JobContext,
    JobRecord,
    JobSpec,
    JobState,
    UploadRef,
    get_spec,
    import_job_modules,
    python_args,
)
from wirehub.jobs.buffer import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENTS,
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    OUTPUT,
    EventBuffer,
    coalesce,
    event_size,
    output_items,
)
from wirehub.jobs.celery_common import (
    CREDIT_WINDOW,
    MAX_EVENTS_PER_JOB,
    TASK_NAME,
    TRANSITION,
    JobKeys,
    decode_record,
    dump,
    make_celery,
    terminal_event,
    transition_args,
)
from wirehub.jobs.local import check_json, error_dict

if TYPE_CHECKING:
    from wirehub.settings import Settings

__all__ = ["Worker", "run_worker"]

logger = logging.getLogger("wirehub.jobs")


class Worker:
    """Runs ``wirehub.run_job(job_id, attempt)`` messages; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        result_ttl: float,
        cancel_grace: float,
        lease: float,
        resend: Callable[[str, int], None],
        keys: JobKeys | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        window: int = CREDIT_WINDOW,
        credit_timeout: float | None = None,
    ) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.transition = self.redis.register_script(TRANSITION)
        self.keys = keys or JobKeys()
        self.result_ttl = result_ttl
        self.cancel_grace = cancel_grace
        self.lease = lease
        self.resend = resend
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.window = window
        self.credit_timeout = credit_timeout if credit_timeout is not None else max(1.0, 2 * lease)
        self.name = f"{socket.gethostname()}-{os.getpid()}"

    def publish(
        self,
        event: dict[str, Any],
        client_id: str | None,
        *,
        log: list[dict[str, Any]] | None = None,
        credit: str | None = None,
        record: dict[str, bytes] | None = None,
    ) -> int:
        """Log and publish one event in one round trip; returns how many hubs got it.

        ``log``: the entries to append to the event log instead of the event
        (one per output of a batch); ``record``: fields to set on the record.
        """
        job_id = event["job_id"]
        keys, ts = self.keys, time.time()
        pipe = self.redis.pipeline(transaction=False)
        if record:
            # cast: redis-py types `mapping` keyed by its whole EncodableT union (invariant).
            pipe.hset(keys.record(job_id), mapping=cast("Mapping[Any, bytes]", record))
        pipe.rpush(keys.events(job_id), *[dump({**e, "ts": ts}) for e in (log or [event])])
        pipe.ltrim(keys.events(job_id), -MAX_EVENTS_PER_JOB, -1)
        payload = {**event, "client_id": client_id}
        if credit is not None:
            payload["credit"] = credit
        pipe.publish(keys.channel, dump(payload))
        return int(pipe.execute()[-1])

    def move(
        self, job_id: str, allowed: tuple[str, ...], state: str, ttl: float, **fields: Any
    ) -> bool:
        keys, args = transition_args(self.keys, job_id, allowed, state, ttl, fields)
        return bool(self.transition(keys=keys, args=args))

    def run(self, job_id: str, attempt: int) -> None:
        record = decode_record(self.redis.hgetall(self.keys.record(job_id)))
        if record is None:
            logger.info("job %s: no record (expired or flushed), skipped", job_id)
            return
        if record.state != JobState.QUEUED or record.attempts != attempt - 1:
            logger.info(
                "job %s: %s after %d attempt(s), message for attempt %d skipped",
                job_id,
                record.state,
                record.attempts,
                attempt,
            )
            return
        try:
            spec = get_spec(record.job)
        except NotFound:
            error = {"type": "NotFound", "message": f"job '{record.job}' is not known to worker"}
            self._end(record, JobState.FAILED, None, error)
            return
        self.redis.set(self.keys.lease(job_id), self.name, px=int(self.lease * 1000))
        if not self.move(
            job_id,
            ("queued",),
            "running",
            0,
            attempts=attempt,
            started_at=time.time(),
            worker=self.name,
        ):
            return  # cancelled meanwhile
        record.attempts = attempt
        self.publish(
            {"type": "job.running", "job_id": job_id, "attempt": attempt}, record.client_id
        )
        outcome, value = self._execute(record, spec)
        if outcome == "error" and attempt <= spec.retries:
            if self.move(job_id, ("running",), "queued", 0):
                logger.info("job %s failed (%s), retrying", job_id, value)
                self.publish(
                    {
                        "type": "job.queued",
                        "job_id": job_id,
                        "job": record.job,
                        "attempt": attempt + 1,
                    },
                    record.client_id,
                )
                self.resend(job_id, attempt + 1)
            return
        if outcome == "ok":
            self._end(record, JobState.SUCCEEDED, value, None)
        elif outcome == "cancelled":
            self._end(
                record,
                JobState.CANCELLED,
                None,
                {"type": "Cancelled", "message": "the job was cancelled"},
            )
        elif outcome == "timeout":
            message = f"job '{spec.name}' exceeded its timeout of {spec.timeout:g} s"
            self._end(
                record, JobState.TIMED_OUT, None, {"type": "TimeoutError", "message": message}
            )
        else:
            self._end(record, JobState.FAILED, None, value)

    def _end(self, record: JobRecord, state: JobState, result: Any, error: Any) -> None:
        fields: dict[str, Any] = {"finished_at": time.time(), "result": result, "error": error}
        if state == JobState.SUCCEEDED:
            fields["progress"] = 1.0
        keys = self.keys
        if self.move(record.job_id, ("queued", "running"), state, self.result_ttl, **fields):
            self.redis.expire(keys.events(record.job_id), int(self.result_ttl))
            self.publish(terminal_event(record.job_id, state, result, error), record.client_id)
        self.redis.delete(keys.lease(record.job_id), keys.cancel(record.job_id))
        logger.info("job %s (%s) %s", record.job_id, record.job, state)

    def _execute(self, record: JobRecord, spec: JobSpec) -> tuple[str, Any]:
        """Run the function in a thread; its events through a flusher that is drained last."""
        flusher = _Flusher(self, record)
        try:
            return self._supervise(record, spec, flusher)
        finally:
            # Everything the job emitted goes out before its terminal event.
            flusher.close()

    def _supervise(self, record: JobRecord, spec: JobSpec, flusher: _Flusher) -> tuple[str, Any]:
        """Enforce timeout and cancellation from here while the job's thread runs."""
        job_id = record.job_id
        keys = self.keys
        flag = threading.Event()  # ctx.cancelled
        cancel_requested = threading.Event()
        done = threading.Event()
        box: dict[str, Any] = {}
        ctx = JobContext(
            job_id,
            spec.name,
            record.args,
            emit=flusher.emit,
            cancel_flag=flag,
            upload=UploadRef(**record.upload) if record.upload else None,
            attempt=record.attempts,
        )
        kwargs = python_args(spec, record.args)

        def target() -> None:
            try:
                if spec.is_async:
                    loop = asyncio.new_event_loop()
                    try:
                        box["task"] = loop.create_task(spec.fn(ctx, **kwargs))
                        box["loop"] = loop
                        box["result"] = loop.run_until_complete(box["task"])
                    finally:
                        loop.close()
                else:
                    box["result"] = spec.fn(ctx, **kwargs)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        def hard_stop() -> None:
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
            # A sync function cannot be stopped from outside: it is abandoned.

        thread = threading.Thread(target=target, name=f"wirehub-job-{job_id[:8]}", daemon=True)
        thread.start()
        started = time.monotonic()
        deadline = started + spec.timeout if spec.timeout else None
        cancel_deadline: float | None = None
        next_lease = 0.0
        while not done.wait(0.02):
            now = time.monotonic()
            if now >= next_lease:
                next_lease = now + self.lease / 3
                pipe = self.redis.pipeline(transaction=False)
                pipe.set(keys.lease(job_id), self.name, px=int(self.lease * 1000))
                pipe.exists(keys.cancel(job_id))
                _, cancelled = pipe.execute()
                if cancelled and not cancel_requested.is_set():
                    cancel_requested.set()
                    flag.set()
                    cancel_deadline = now + self.cancel_grace
            if deadline is not None and now >= deadline:
                flag.set()
                hard_stop()
                return "timeout", None
            if cancel_deadline is not None and now >= cancel_deadline:
                hard_stop()
                return "cancelled", None
        if cancel_requested.is_set():
            return "cancelled", None
        if "error" in box:
            return "error", error_dict(box["error"])
        try:
            return "ok", check_json(box["result"])
        except Exception as exc:
            return "error", error_dict(exc)


class _Flusher:
    """One attempt's events: bounded, published in order, outputs coalesced and paced."""

    def __init__(self, worker: Worker, record: JobRecord) -> None:
        self.worker = worker
        self.job_id = record.job_id
        self.client_id = record.client_id
        self.credit_key = worker.keys.credit(record.job_id, record.attempts)
        self.buffer = EventBuffer(max_events=worker.max_events, max_bytes=worker.max_bytes)
        #: Per unacknowledged batch: how many hubs received it (credits it needs).
        self._debts: collections.deque[int] = collections.deque()
        self._credits = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wirehub-flush-{self.job_id[:8]}", daemon=True
        )
        self._thread.start()

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        """``ctx.output`` / ``ctx.progress``: blocks while the buffer is full."""
        size = event_size(kind, fields)
        self.buffer.put_blocking({"type": kind, "job_id": self.job_id, **fields}, size)

    def close(self) -> None:
        """Accept nothing more; publish what is queued; then return.

        An abandoned job's later events are dropped. Bounded: the buffer holds
        at most its bounds, and each wait for credit at most ``credit_timeout``.
        """
        self.buffer.close(self.job_id)
        self._closing.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self.worker.redis.delete(self.credit_key)

    def _run(self) -> None:
        buffer = self.buffer
        while True:
            closing = self._closing.is_set()  # read first: nothing is added after it is set
            run = buffer.take(MAX_BATCH_ITEMS, MAX_BATCH_BYTES)
            if run is None:
                if closing:
                    return
                buffer.wait_filled(0.05)
                continue
            try:
                self._send(run)
            except Exception:
                # Redis is down: the job goes on; its lease lapses if it stays down.
                logger.exception("job %s: could not publish %d event(s)", self.job_id, len(run))

    def _send(self, run: list[dict[str, Any]]) -> None:
        event = coalesce(run)
        kind = event["type"]
        worker = self.worker
        if kind != OUTPUT:
            record = None
            if kind == "job.progress":
                record = {
                    "progress": dump(event["progress"]),
                    "message": dump(event.get("message")),
                }
            worker.publish(event, self.client_id, record=record)
            return
        self._wait_for_credit()
        log = [
            {"type": OUTPUT, "job_id": self.job_id, "data": item} for item in output_items(event)
        ]
        receivers = worker.publish(event, self.client_id, log=log, credit=self.credit_key)
        self._debts.append(receivers)
        self._settle()

    def _settle(self) -> None:
        while self._debts and self._credits >= self._debts[0]:
            self._credits -= self._debts.popleft()

    def _wait_for_credit(self) -> None:
        redis, key, worker = self.worker.redis, self.credit_key, self.worker
        while len(self._debts) >= worker.window:
            got = redis.blpop([key], timeout=worker.credit_timeout)
            if got is None:
                logger.warning(
                    "job %s: no hub took its last %d output batch(es) in %.1f s; going on",
                    self.job_id,
                    len(self._debts),
                    worker.credit_timeout,
                )
                self._debts.clear()
                self._credits = 0
                return
            more = redis.lpop(key, 100) or []
            self._credits += 1 + len(more)
            self._settle()


def run_worker(settings: Settings, *, argv: list[str] | None = None) -> None:
    """``wirehub worker``: a Celery worker running the configured job modules."""
    from celery.signals import worker_ready

    if not settings.redis_url:
        raise WirehubError("wirehub worker needs redis_url (config or WIREHUB_REDIS_URL)")
    cfg = settings.jobs
    keys = JobKeys(settings.redis.prefix)
    import_job_modules(cfg.modules)
    app = make_celery(
        settings.redis_url, queue=cfg.queue, visibility_timeout=cfg.visibility_timeout, keys=keys
    )

    def resend(job_id: str, attempt: int) -> None:
        app.send_task(
            TASK_NAME, args=[job_id, attempt], queue=cfg.queue, task_id=f"{job_id}-{attempt}"
        )

    worker = Worker(
        settings.redis_url,
        result_ttl=cfg.result_ttl,
        cancel_grace=cfg.cancel_grace,
        lease=cfg.worker_lease,
        resend=resend,
        keys=keys,
    )

    @app.task(name=TASK_NAME, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(job_id: str, attempt: int) -> None:
        worker.run(job_id, attempt)

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def _ready(**_: Any) -> None:
        logger.info(
            "wirehub worker ready: queue %s, prefix %s, pool %s, jobs %s",
            cfg.queue,
            keys.prefix,
            cfg.worker_pool,
            sorted(_registered()),
        )

    args = argv or [
        "worker",
        f"--pool={cfg.worker_pool}",
        f"--concurrency={cfg.worker_concurrency}",
        f"--queues={cfg.queue}",
        f"--hostname=wirehub-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=WARNING",
    ]
    app.worker_main(args)


def _registered() -> list[str]:
    from wirehub.jobs.api import REGISTRY

    return list(REGISTRY)
