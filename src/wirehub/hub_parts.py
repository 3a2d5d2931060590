"""The parts a Hub builds from its settings when they are not given: broker, job runner, uploads.

Kept out of :class:`wirehub.hub.Hub` (the composition root stays a list of
parts and their lifecycle); ``Hub(settings, broker=..., runner=..., store=...)``
skips what is given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wirehub.brokers import create_broker
from wirehub.core.interfaces import Broker
from wirehub.core.node import Handler, Node
from wirehub.core.ratelimit import limit_per_client
from wirehub.extras import require as require_extra
from wirehub.jobs.api import JobRunner
from wirehub.jobs.component import Jobs
from wirehub.jobs.local import LocalRunner
from wirehub.settings import Settings
from wirehub.uploads.manager import Uploads
from wirehub.uploads.stores import SpoolStore

__all__ = ["build_broker", "build_jobs"]


def build_broker(settings: Settings) -> Broker:
    """The memory broker, or the Redis one when ``redis_url`` is set."""
    cfg = settings.redis
    if settings.redis_url:
        require_extra("redis", "the Redis broker (redis_url)")
    return create_broker(
        settings.redis_url,
        prefix=cfg.prefix,
        node_heartbeat=cfg.node_heartbeat,
        node_ttl=cfg.node_ttl,
        gap_timeout=cfg.gap_timeout,
        op_timeout=cfg.op_timeout,
        reconnect_cap=cfg.reconnect_cap,
        idempotency_window=settings.limits.idempotency_window,
        idempotency_max_keys=settings.limits.idempotency_max_keys,
    )


def build_jobs(
    settings: Settings,
    node: Node,
    publish: Callable[..., Awaitable[Any]],
    runner: JobRunner | None,
    store: SpoolStore | None,
) -> tuple[Jobs, Uploads]:
    """The job runner named in ``[jobs]`` (unless given) and the upload handler that feeds
    it, their frame handlers registered on ``node``."""
    cfg, up = settings.jobs, settings.uploads
    if runner is None and cfg.runner == "celery":
        require_extra("celery", "the Celery runner")
        from wirehub.jobs.celery import CeleryRunner

        runner = CeleryRunner.from_settings(settings)
    elif runner is None:
        runner = LocalRunner(
            concurrency=cfg.concurrency,
            result_ttl=cfg.result_ttl,
            cancel_grace=cfg.cancel_grace,
        )
    jobs = Jobs(runner, publish=publish, send_frame=node.send_frame, modules=cfg.modules)
    if store is None:
        store = SpoolStore(
            up.dir,
            expire_after=up.expire_after,
            keep_after=up.keep_after,
            shared=cfg.runner == "celery",
        )
    uploads = Uploads(
        store,
        jobs=jobs,
        max_size=up.max_size,
        chunk_size=up.chunk_size,
        max_concurrent=up.max_concurrent,
    )
    per_minute = settings.limits.job_submits_per_minute
    submit: Handler = jobs.ws_submit
    if per_minute:
        submit = limit_per_client(submit, per_minute, what="job submissions")
    node.on("job.submit", submit)
    node.on("job.cancel", jobs.ws_cancel)
    node.on("upload.start", uploads.ws_start)
    node.on("upload.finish", uploads.ws_finish)
    return jobs, uploads
