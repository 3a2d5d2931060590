"""The Celery runner: jobs run on ``wirehub worker`` processes, state lives in Redis.

Celery only carries the message "run job <id>, attempt <n>" (broker: Redis).
Everything else is wirehub's own, in Redis keys (:data:`KEYS`):

* the job record, a hash of JSON fields, changed only through one Lua script
  (:data:`TRANSITION`) that checks the current state first, so a transition
  happens once whoever tries it (worker, hub, a second hub);
* the event log of each job (a capped list) and one pub/sub channel on which
  every event travels from the worker (or the hub) to every hub process;
* a cancel flag per job and a lease the worker refreshes while the job runs.

Workers acknowledge a message after the job (``acks_late``), take one at a
time (``worker_prefetch_multiplier = 1``), and the broker's visibility timeout
exceeds the longest job, so a message is redelivered only when its worker
died. A hub watches the leases: a running job whose lease lapsed is retried
(``retries``) or failed with ``WorkerLost``; a redelivered message for a job
that already moved on is skipped. Jobs must therefore be idempotent.

Nothing here blocks the hub's event loop: Redis calls use ``redis.asyncio``
and Celery's (blocking) publish runs in a dedicated thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from wirehub.backoff import backoff
from wirehub.errors import Conflict, NotFound, WirehubError
from wirehub.jobs.api import (
    EventSink,
    JobContext,
    JobRecord,
    JobSpec,
    JobState,
    UploadRef,
    get_spec,
    import_job_modules,
    python_args,
)
from wirehub.jobs.local import check_json, error_dict

if TYPE_CHECKING:
    from celery import Celery

    from wirehub.settings import Settings

__all__ = ["KEYS", "TASK_NAME", "TRANSITION", "CeleryRunner", "make_celery", "run_worker"]

logger = logging.getLogger("wirehub.jobs")

TASK_NAME = "wirehub.run_job"
MAX_EVENTS_PER_JOB = 1000


class KEYS:
    """Every Redis key and channel the Celery runner uses."""

    prefix = "wirehub:"
    channel = "wirehub:jobs:events"
    index = "wirehub:jobs"  # zset: job_id by creation time
    running = "wirehub:jobs:running"  # set of running job ids

    @staticmethod
    def record(job_id: str) -> str:
        return f"wirehub:job:{job_id}"

    @staticmethod
    def events(job_id: str) -> str:
        return f"wirehub:job:{job_id}:events"

    @staticmethod
    def cancel(job_id: str) -> str:
        return f"wirehub:job:{job_id}:cancel"

    @staticmethod
    def lease(job_id: str) -> str:
        return f"wirehub:job:{job_id}:lease"


#: KEYS: record, running set. ARGV: allowed states ("a,b"), ttl seconds (0: keep),
#: job_id, new state, then field/value pairs (values are JSON). Returns 1 if applied.
TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if state == '"' .. s .. '"' then ok = true end
end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'state', '"' .. ARGV[4] .. '"')
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if ARGV[4] == 'running' then
  redis.call('SADD', KEYS[2], ARGV[3])
else
  redis.call('SREM', KEYS[2], ARGV[3])
end
return 1
"""


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


def _encode_record(record: JobRecord) -> dict[str, bytes]:
    return {key: _dump(value) for key, value in record.to_dict().items()}


def _decode_record(raw: dict[Any, Any]) -> JobRecord | None:
    if not raw:
        return None
    data = {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}
    return JobRecord.from_dict(data)


def _transition_args(
    job_id: str, allowed: tuple[str, ...], state: str, ttl: float, fields: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    args: list[Any] = [",".join(allowed), int(ttl), job_id, state]
    for key, value in fields.items():
        args += [key, _dump(value)]
    return [KEYS.record(job_id), KEYS.running], args


def _terminal_event(job_id: str, state: str, result: Any, error: Any) -> dict[str, Any]:
    if state == JobState.SUCCEEDED:
        return {"type": "job.result", "job_id": job_id, "result": result}
    if state == JobState.CANCELLED:
        return {"type": "job.cancelled", "job_id": job_id, "state": state, "error": error}
    return {"type": "job.failed", "job_id": job_id, "error": error, "state": state}


def make_celery(redis_url: str, *, queue: str, visibility_timeout: float) -> Celery:
    """A Celery app on the Redis broker with the settings safe for long jobs."""
    from celery import Celery

    app = Celery("wirehub", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": int(visibility_timeout)},
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,
        task_ignore_result=True,  # wirehub keeps its own state: no PENDING-for-unknown
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app


# -- hub side --------------------------------------------------------------------


class CeleryRunner:
    """Hub side of the Celery runner; see the module docstring."""

    name = "celery"

    def __init__(
        self,
        redis_url: str,
        *,
        queue: str = "wirehub",
        result_ttl: float = 3600.0,
        cancel_grace: float = 5.0,
        lease: float = 5.0,
        visibility_timeout: float = 3600.0,
    ) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.result_ttl = result_ttl
        self.cancel_grace = cancel_grace
        self.lease = lease
        self.visibility_timeout = visibility_timeout
        self._redis: Any = None
        self._transition: Any = None
        self._app: Celery | None = None
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="wirehub-celery-send")
        self._sink: EventSink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryRunner:
        cfg = settings.jobs
        assert settings.redis_url, "runner 'celery' needs redis_url"
        return cls(
            settings.redis_url,
            queue=cfg.queue,
            result_ttl=cfg.result_ttl,
            cancel_grace=cfg.cancel_grace,
            lease=cfg.worker_lease,
            visibility_timeout=cfg.visibility_timeout,
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        import redis.asyncio as aioredis

        self._sink = sink
        self._redis = aioredis.Redis.from_url(self.redis_url)
        self._transition = self._redis.register_script(TRANSITION)
        await self._redis.ping()
        self._app = make_celery(
            self.redis_url, queue=self.queue, visibility_timeout=self.visibility_timeout
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._sender, self._declare_queue)
        subscribed = asyncio.Event()
        self._tasks = [
            loop.create_task(self._listen(subscribed), name="wirehub-jobs-listen"),
            loop.create_task(self._watch_leases(), name="wirehub-jobs-leases"),
        ]
        await asyncio.wait_for(subscribed.wait(), 10)

    async def stop(self) -> None:
        """Stop listening; running jobs go on in the workers (state stays in Redis)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._sender.shutdown(wait=False, cancel_futures=True)
        if self._redis is not None:
            await self._redis.aclose()
        if self._app is not None:
            await asyncio.to_thread(self._app.close)
        logger.info("celery runner stopped (jobs keep running on the workers)")

    def readiness(self) -> dict[str, bool]:
        return {"jobs": self._listening}

    def _declare_queue(self) -> None:
        app = self._app
        assert app is not None
        queue = app.amqp.queues[self.queue]  # the same exchange and key a worker binds
        with app.connection_for_write() as conn:
            queue.bind(conn.default_channel).declare()

    # -- API -------------------------------------------------------------------

    async def submit(self, record: JobRecord) -> None:
        job_id = record.job_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(KEYS.record(job_id), mapping=_encode_record(record))
            # A record never outlives the broker's promise to deliver its message.
            pipe.expire(KEYS.record(job_id), int(self.visibility_timeout * 2 + self.result_ttl))
            pipe.zadd(KEYS.index, {job_id: record.created_at})
            await pipe.execute()
        await self._publish_event(
            {"type": "job.queued", "job_id": job_id, "job": record.job, "attempt": 1},
            record.client_id,
        )
        try:
            await self._send(job_id, 1)
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": f"could not queue the job: {exc}"}
            await self._finish(record, JobState.FAILED, ("queued",), error=error)
            raise WirehubError(error["message"]) from None

    async def cancel(self, job_id: str) -> JobRecord:
        record = await self.get(job_id)
        if record is None:
            raise NotFound(f"unknown job '{job_id}'", job_id=job_id)
        if record.done:
            raise Conflict(f"job '{job_id}' already {record.state}", job_id=job_id)
        error = {"type": "Cancelled", "message": "the job was cancelled"}
        if await self._finish(record, JobState.CANCELLED, ("queued",), error=error):
            return await self.get(job_id) or record
        # Running: the worker sees the flag, sets ctx.cancelled and stops the job.
        await self._redis.set(KEYS.cancel(job_id), b"1", ex=int(self.visibility_timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_grace + self.lease * 2 + 1.0
        while loop.time() < deadline:
            current = await self.get(job_id)
            if current is None or current.done:
                return current or record
            await asyncio.sleep(0.05)
        # The worker did not answer in time: the hub records the cancellation.
        current = await self.get(job_id) or record
        await self._finish(current, JobState.CANCELLED, ("queued", "running"), error=error)
        return await self.get(job_id) or current

    async def get(self, job_id: str) -> JobRecord | None:
        return _decode_record(await self._redis.hgetall(KEYS.record(job_id)))

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        ids = await self._redis.zrevrange(KEYS.index, 0, 10_000)
        records: list[JobRecord] = []
        missing = []
        for start in range(0, len(ids), 200):
            batch = ids[start : start + 200]
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in batch:
                    pipe.hgetall(KEYS.record(job_id.decode()))
                raws = await pipe.execute()
            for job_id, raw in zip(batch, raws, strict=True):
                record = _decode_record(raw)
                if record is None:
                    missing.append(job_id)
                elif state is None or record.state == state:
                    records.append(record)
            if len(records) >= limit:
                break
        if missing:
            await self._redis.zrem(KEYS.index, *missing)
        return records[:limit]

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        if not await self._redis.exists(KEYS.record(job_id)):
            raise NotFound(f"unknown job '{job_id}'", job_id=job_id)
        return [orjson.loads(e) for e in await self._redis.lrange(KEYS.events(job_id), 0, -1)]

    # -- internals -------------------------------------------------------------

    async def _send(self, job_id: str, attempt: int) -> None:
        app = self._app
        assert app is not None
        await asyncio.get_running_loop().run_in_executor(
            self._sender,
            lambda: app.send_task(
                TASK_NAME, args=[job_id, attempt], queue=self.queue, task_id=f"{job_id}-{attempt}"
            ),
        )

    async def _finish(
        self,
        record: JobRecord,
        state: JobState,
        allowed: tuple[str, ...],
        *,
        error: dict[str, str] | None = None,
    ) -> bool:
        fields = {"finished_at": time.time(), "error": error}
        keys, args = _transition_args(record.job_id, allowed, state, self.result_ttl, fields)
        if not await self._transition(keys=keys, args=args):
            return False
        await self._redis.expire(KEYS.events(record.job_id), int(self.result_ttl))
        await self._publish_event(
            _terminal_event(record.job_id, state, None, error), record.client_id
        )
        return True

    async def _publish_event(self, event: dict[str, Any], client_id: str | None) -> None:
        await publish_event_async(self._redis, event, client_id)

    async def _listen(self, subscribed: asyncio.Event) -> None:
        """Relay every job event published on Redis to this hub's sink."""
        delays = backoff(initial=0.2, cap=10.0)
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(KEYS.channel)
                self._listening = True
                subscribed.set()
                delays = backoff(initial=0.2, cap=10.0)
                async for message in pubsub.listen():
                    if message["type"] != "message" or self._sink is None:
                        continue
                    self._sink(orjson.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._listening = False
                delay = next(delays)
                logger.warning("job events: Redis error (%s), retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _watch_leases(self) -> None:
        """A running job whose worker stopped refreshing its lease is retried or failed."""
        interval = max(0.2, self.lease / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._check_leases()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("job lease check failed: %s", exc)

    async def _check_leases(self) -> None:
        for raw_id in await self._redis.smembers(KEYS.running):
            job_id = raw_id.decode()
            if await self._redis.exists(KEYS.lease(job_id)):
                continue
            record = await self.get(job_id)
            if record is None:
                await self._redis.srem(KEYS.running, job_id)
                continue
            if record.state != JobState.RUNNING:
                continue
            spec = _spec_or_none(record.job)
            retries = spec.retries if spec is not None else 0
            worker = record.worker or "?"
            if record.attempts <= retries:
                keys, args = _transition_args(job_id, ("running",), "queued", 0, {})
                if await self._transition(keys=keys, args=args):
                    logger.warning("job %s: worker %s lost, retrying", job_id, worker)
                    await self._publish_event(
                        {
                            "type": "job.queued",
                            "job_id": job_id,
                            "job": record.job,
                            "attempt": record.attempts + 1,
                        },
                        record.client_id,
                    )
                    await self._send(job_id, record.attempts + 1)
                continue
            error = {
                "type": "WorkerLost",
                "message": f"the worker running this job ({worker}) stopped: no heartbeat "
                f"for {self.lease:g} s",
            }
            if await self._finish(record, JobState.FAILED, ("running",), error=error):
                logger.warning("job %s: worker %s lost, job failed", job_id, worker)


def _spec_or_none(name: str) -> JobSpec | None:
    try:
        return get_spec(name)
    except NotFound:
        return None


async def publish_event_async(redis: Any, event: dict[str, Any], client_id: str | None) -> None:
    job_id = event["job_id"]
    logged = _dump({**event, "ts": time.time()})
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(KEYS.events(job_id), logged)
        pipe.ltrim(KEYS.events(job_id), -MAX_EVENTS_PER_JOB, -1)
        pipe.publish(KEYS.channel, _dump({**event, "client_id": client_id}))
        await pipe.execute()


# -- worker side -------------------------------------------------------------------


class _Worker:
    """What a ``wirehub.run_job`` task does inside ``wirehub worker``."""

    def __init__(
        self,
        redis_url: str,
        *,
        result_ttl: float,
        cancel_grace: float,
        lease: float,
        resend: Callable[[str, int], None],
    ) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.transition = self.redis.register_script(TRANSITION)
        self.result_ttl = result_ttl
        self.cancel_grace = cancel_grace
        self.lease = lease
        self.resend = resend
        self.name = f"{socket.gethostname()}-{os.getpid()}"

    def publish(self, event: dict[str, Any], client_id: str | None) -> None:
        job_id = event["job_id"]
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(KEYS.events(job_id), _dump({**event, "ts": time.time()}))
        pipe.ltrim(KEYS.events(job_id), -MAX_EVENTS_PER_JOB, -1)
        pipe.publish(KEYS.channel, _dump({**event, "client_id": client_id}))
        pipe.execute()

    def move(
        self, job_id: str, allowed: tuple[str, ...], state: str, ttl: float, **fields: Any
    ) -> bool:
        keys, args = _transition_args(job_id, allowed, state, ttl, fields)
        return bool(self.transition(keys=keys, args=args))

    def run(self, job_id: str, attempt: int) -> None:
        record = _decode_record(self.redis.hgetall(KEYS.record(job_id)))
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
        self.redis.set(KEYS.lease(job_id), self.name, px=int(self.lease * 1000))
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
        if self.move(record.job_id, ("queued", "running"), state, self.result_ttl, **fields):
            self.redis.expire(KEYS.events(record.job_id), int(self.result_ttl))
            self.publish(_terminal_event(record.job_id, state, result, error), record.client_id)
        self.redis.delete(KEYS.lease(record.job_id), KEYS.cancel(record.job_id))
        logger.info("job %s (%s) %s", record.job_id, record.job, state)

    def _execute(self, record: JobRecord, spec: JobSpec) -> tuple[str, Any]:
        """Run the function in a thread; enforce timeout and cancellation from here."""
        job_id = record.job_id
        flag = threading.Event()  # ctx.cancelled
        cancel_requested = threading.Event()
        done = threading.Event()
        box: dict[str, Any] = {}

        def emit(kind: str, fields: dict[str, Any]) -> None:
            if kind == "job.progress":
                self.redis.hset(
                    KEYS.record(job_id),
                    mapping={
                        "progress": _dump(fields["progress"]),
                        "message": _dump(fields.get("message")),
                    },
                )
            self.publish({"type": kind, "job_id": job_id, **fields}, record.client_id)

        ctx = JobContext(
            job_id,
            spec.name,
            record.args,
            emit=emit,
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
                pipe.set(KEYS.lease(job_id), self.name, px=int(self.lease * 1000))
                pipe.exists(KEYS.cancel(job_id))
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


def run_worker(settings: Settings, *, argv: list[str] | None = None) -> None:
    """``wirehub worker``: a Celery worker running the configured job modules."""
    from celery.signals import worker_ready

    if not settings.redis_url:
        raise WirehubError("wirehub worker needs redis_url (config or WIREHUB_REDIS_URL)")
    cfg = settings.jobs
    import_job_modules(cfg.modules)
    app = make_celery(
        settings.redis_url, queue=cfg.queue, visibility_timeout=cfg.visibility_timeout
    )

    def resend(job_id: str, attempt: int) -> None:
        app.send_task(
            TASK_NAME, args=[job_id, attempt], queue=cfg.queue, task_id=f"{job_id}-{attempt}"
        )

    worker = _Worker(
        settings.redis_url,
        result_ttl=cfg.result_ttl,
        cancel_grace=cfg.cancel_grace,
        lease=cfg.worker_lease,
        resend=resend,
    )

    @app.task(name=TASK_NAME, acks_late=True, ignore_result=True)
    def run_job(job_id: str, attempt: int) -> None:
        worker.run(job_id, attempt)

    @worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        logger.info(
            "wirehub worker ready: queue %s, pool %s, jobs %s",
            cfg.queue,
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
