"""The Celery runner: jobs run on ``wirehub worker`` processes, state lives in Redis.

Celery only carries the message "run job <id>, attempt <n>" (broker: Redis).
Everything else is wirehub's own, in Redis keys under the ``[redis] prefix``
(:class:`~wirehub.jobs.celery_common.JobKeys`):

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

Events are bounded end to end: the worker queues them in a bounded buffer
and publishes consecutive outputs as one batch, at most ``CREDIT_WINDOW``
batches ahead of the hubs (:mod:`wirehub.jobs.celery_worker`); this hub's
listener puts each event into the hub's bounded buffer, awaiting room, and
only then pushes the batch's credit, so a hub that falls behind slows the job.

Nothing here blocks the hub's event loop: Redis calls use ``redis.asyncio``
and Celery's (blocking) publish runs in a dedicated thread. The worker side
lives in :mod:`wirehub.jobs.celery_worker`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from wirehub.backoff import backoff
from wirehub.errors import Conflict, NotFound, WirehubError
from wirehub.jobs.api import EventSink, JobRecord, JobSpec, JobState, get_spec
from wirehub.jobs.celery_common import (
    MAX_EVENTS_PER_JOB,
    TASK_NAME,
    TRANSITION,
    JobKeys,
    decode_record,
    dump,
    encode_record,
    make_celery,
    terminal_event,
    transition_args,
)

if TYPE_CHECKING:
    from celery import Celery

    from wirehub.settings import Settings

__all__ = [
    "KEYS",
    "MAX_EVENTS_PER_JOB",
    "TASK_NAME",
    "TRANSITION",
    "CeleryRunner",
    "JobKeys",
    "make_celery",
    "publish_event_async",
    "run_worker",
]

logger = logging.getLogger("wirehub.jobs")

#: The keys under the default prefix (``wirehub``); a runner uses ``JobKeys(prefix)``.
KEYS = JobKeys()
#: Seconds a hub's credit list outlives its last push (the worker deletes it sooner).
CREDIT_TTL = 600


def run_worker(settings: Settings, *, argv: list[str] | None = None) -> None:
    """``wirehub worker`` (see :func:`wirehub.jobs.celery_worker.run_worker`)."""
    from wirehub.jobs.celery_worker import run_worker as run

    run(settings, argv=argv)


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
        prefix: str = "wirehub",
    ) -> None:
        self.redis_url = redis_url
        self.keys = JobKeys(prefix)
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
            prefix=settings.redis.prefix,
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        import redis.asyncio as aioredis

        self._sink = sink
        self._redis = aioredis.Redis.from_url(self.redis_url)
        self._transition = self._redis.register_script(TRANSITION)
        await self._redis.ping()
        self._app = make_celery(
            self.redis_url,
            queue=self.queue,
            visibility_timeout=self.visibility_timeout,
            keys=self.keys,
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
        job_id, keys = record.job_id, self.keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.record(job_id), mapping=encode_record(record))
            # A record never outlives the broker's promise to deliver its message.
            pipe.expire(keys.record(job_id), int(self.visibility_timeout * 2 + self.result_ttl))
            pipe.zadd(keys.index, {job_id: record.created_at})
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
            raise NotFound(f"unknown job id '{job_id}'", job_id=job_id)
        if record.done:
            raise Conflict(f"job '{job_id}' already {record.state}", job_id=job_id)
        error = {"type": "Cancelled", "message": "the job was cancelled"}
        if await self._finish(record, JobState.CANCELLED, ("queued",), error=error):
            return await self.get(job_id) or record
        # Running: the worker sees the flag, sets ctx.cancelled and stops the job.
        await self._redis.set(self.keys.cancel(job_id), b"1", ex=int(self.visibility_timeout))
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
        return decode_record(await self._redis.hgetall(self.keys.record(job_id)))

    async def list(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        keys = self.keys
        ids = await self._redis.zrevrange(keys.index, 0, 10_000)
        records: list[JobRecord] = []
        missing = []
        for start in range(0, len(ids), 200):
            batch = ids[start : start + 200]
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in batch:
                    pipe.hgetall(keys.record(job_id.decode()))
                raws = await pipe.execute()
            for job_id, raw in zip(batch, raws, strict=True):
                record = decode_record(raw)
                if record is None:
                    missing.append(job_id)
                elif state is None or record.state == state:
                    records.append(record)
            if len(records) >= limit:
                break
        if missing:
            await self._redis.zrem(keys.index, *missing)
        return records[:limit]

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        keys = self.keys
        if not await self._redis.exists(keys.record(job_id)):
            raise NotFound(f"unknown job id '{job_id}'", job_id=job_id)
        return [orjson.loads(e) for e in await self._redis.lrange(keys.events(job_id), 0, -1)]

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
        keys, args = transition_args(
            self.keys, record.job_id, allowed, state, self.result_ttl, fields
        )
        if not await self._transition(keys=keys, args=args):
            return False
        await self._redis.expire(self.keys.events(record.job_id), int(self.result_ttl))
        await self._publish_event(
            terminal_event(record.job_id, state, None, error), record.client_id
        )
        return True

    async def _publish_event(self, event: dict[str, Any], client_id: str | None) -> None:
        await publish_event_async(self._redis, event, client_id, keys=self.keys)

    async def _listen(self, subscribed: asyncio.Event) -> None:
        """Relay every job event published on Redis into this hub's bounded buffer.

        Waiting for room there is the backpressure: credit for an output
        batch is pushed only once the batch is in, so the worker stops after
        ``CREDIT_WINDOW`` batches while this hub is behind.
        """
        delays = backoff(initial=0.2, cap=10.0)
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                self._listening = True
                subscribed.set()
                delays = backoff(initial=0.2, cap=10.0)
                async for message in pubsub.listen():
                    if message["type"] != "message" or self._sink is None:
                        continue
                    raw = message["data"]
                    event = orjson.loads(raw)
                    credit = event.pop("credit", None)
                    items = len(event["items"]) if "items" in event else 1
                    await self._sink.aput(event, len(raw), items)
                    if credit:
                        await self._credit(credit)
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

    async def _credit(self, key: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, b"1")
            pipe.expire(key, CREDIT_TTL)
            await pipe.execute()

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
        keys = self.keys
        for raw_id in await self._redis.smembers(keys.running):
            job_id = raw_id.decode()
            if await self._redis.exists(keys.lease(job_id)):
                continue
            record = await self.get(job_id)
            if record is None:
                await self._redis.srem(keys.running, job_id)
                continue
            if record.state != JobState.RUNNING:
                continue
            spec = _spec_or_none(record.job)
            retries = spec.retries if spec is not None else 0
            worker = record.worker or "?"
            if record.attempts <= retries:
                names, args = transition_args(keys, job_id, ("running",), "queued", 0, {})
                if await self._transition(keys=names, args=args):
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


async def publish_event_async(
    redis: Any, event: dict[str, Any], client_id: str | None, *, keys: JobKeys = KEYS
) -> None:
    """A hub's own lifecycle event (queued, cancelled, lost): logged, then to every hub."""
    job_id = event["job_id"]
    logged = dump({**event, "ts": time.time()})
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(keys.events(job_id), logged)
        pipe.ltrim(keys.events(job_id), -MAX_EVENTS_PER_JOB, -1)
        pipe.publish(keys.channel, dump({**event, "client_id": client_id}))
        await pipe.execute()
