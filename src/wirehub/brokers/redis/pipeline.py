"""Publishes to Redis in one pipeline per loop pass: one round trip for many messages.

Each publish is one call of the publish script. Awaited one by one, a node
pays a round trip per message, and a reader that publishes a burst waits for
each before it reads the next (so the burst's deliveries cannot share writes,
core/coalesce.py). :class:`ScriptBatcher` queues the calls made during one
pass and sends them as one non-transactional pipeline; while it is in flight
the next calls queue for the following one. Only one pipeline is in flight at
a time, so the script runs in call order — the order offsets are given in.

``EVALSHA`` is sent directly (the script is loaded once, and again if Redis
answers ``NOSCRIPT``): redis-py's own pipeline script support asks ``SCRIPT
EXISTS`` on every execute, one more round trip each time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["ScriptBatcher"]

logger = logging.getLogger("wirehub.redis")

#: At most this many calls share one pipeline (the rest take the next one).
MAX_PIPELINE = 512


Done = Callable[[Any], None]


class ScriptBatcher:
    """``submit(keys, args, done)``: a script call, pipelined with its pass's others.

    ``done`` gets the script's answer, or the exception it raised (a connection
    error, a Redis error), called in submit order. No task or future per call.
    """

    def __init__(self, redis: Redis, script: AsyncScript) -> None:
        self._redis = redis
        self._script = script
        self._queued: list[tuple[list[Any], list[Any], Done]] = []
        self._running = False
        #: Pipelines sent, and calls they carried (a bench reads their ratio).
        self.pipelines = 0
        self.calls = 0

    def submit(self, keys: list[Any], args: list[Any], done: Done) -> None:
        self._queued.append((keys, args, done))
        if not self._running:
            self._running = True
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: loop.create_task(self._drain(), name="wirehub-redis-publish"))

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:MAX_PIPELINE]
                del self._queued[:MAX_PIPELINE]
                await self._send(batch)
        finally:
            self._running = False

    async def _send(self, batch: list[tuple[list[Any], list[Any], Done]]) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        script = self._script  # its sha is computed locally; NOSCRIPT loads it (below)
        pipe = self._redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results: list[Any] = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError as stopped:  # the hub is stopping
            for *_, done in batch:
                _call(done, stopped)
            raise
        except Exception as exc:  # the connection failed: every call of it did
            results = [exc] * len(batch)
        for (keys, args, done), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                # Redis lost its scripts (a restart, SCRIPT FLUSH): this call loads
                # it again; the calls after it in the batch wait for it, in order.
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            _call(done, result)


def _call(done: Done, result: Any) -> None:
    try:
        done(result)
    except Exception:
        logger.exception("a publish callback failed")
