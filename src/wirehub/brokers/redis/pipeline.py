"""Publishes to Redis in one script call per loop pass: one round trip for many messages.

Awaited one by one, a node pays a round trip per message, and a reader that
publishes a burst waits for each before it reads the next (so the burst's
deliveries cannot share writes, core/coalesce.py). :class:`ScriptBatcher`
queues the publishes made during one pass and sends them as **one** call of
the publish script (scripts.py), which takes them all and answers one result
each: one command to encode and one reply to read per pass, where a pipeline
of one call per publish costs redis-py a command, a reply read and a timeout
per message. The script publishes each room's messages of the batch as one
pub/sub message too, so every node reads one message per room and batch.

While a call is in flight the next publishes queue for the following one.
Only one call is in flight at a time, so batches run in submit order — the
order offsets are given in. A script call is atomic: its publishes succeed or
fail together (a connection error, a Redis error), and each ``done`` is told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.commands.core import AsyncScript

__all__ = ["MAX_BATCH", "Group", "ScriptBatcher"]

logger = logging.getLogger("wirehub.redis")

#: At most this many publishes share one script call (the rest take the next one).
MAX_BATCH = 512


Done = Callable[[Any], None]
#: What a group of publishes to one room sends once: its keys and its args.
Group = tuple[list[Any], list[Any]]


class ScriptBatcher:
    """``submit(group, keys, args, done)``: one publish, sent with its pass's others in one call.

    Consecutive publishes with the same ``group`` (one room's keys and
    bounds) share one copy of it: the call gets ``head_args()`` first (this
    node's id: known once the broker is attached), then per group its keys
    and its message count followed by its args, then each publish's keys and
    args in order (scripts.py ``PUBLISH_SCRIPT`` reads that layout). Grouping
    only neighbours keeps the answers in submit order. ``done`` gets that
    publish's answer, or the exception the call raised, called in submit
    order. No task or future per publish.
    """

    def __init__(self, script: AsyncScript, head_args: Callable[[], list[Any]]) -> None:
        self._script = script
        self._head_args = head_args
        self._queued: list[tuple[Group, list[Any], list[Any], Done]] = []
        self._running = False
        #: Script calls sent, and publishes they carried (a bench reads their ratio).
        self.batches = 0
        self.calls = 0

    def submit(self, group: Group, keys: list[Any], args: list[Any], done: Done) -> None:
        self._queued.append((group, keys, args, done))
        if not self._running:
            self._running = True
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: loop.create_task(self._drain(), name="wirehub-redis-publish"))

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:MAX_BATCH]
                del self._queued[:MAX_BATCH]
                await self._send(batch)
        finally:
            self._running = False

    async def _send(self, batch: list[tuple[Group, list[Any], list[Any], Done]]) -> None:
        self.batches += 1
        self.calls += len(batch)
        keys: list[Any] = []
        args: list[Any] = self._head_args()
        group: Group | None = None
        count_at = 0  # where the current group's message count is in args
        for call_group, call_keys, call_args, _ in batch:
            if call_group is not group and call_group != group:
                group = call_group
                keys += group[0]
                count_at = len(args)
                args.append(0)
                args += group[1]
            args[count_at] += 1
            keys += call_keys
            args += call_args
        try:
            # AsyncScript runs EVALSHA and loads the script on NOSCRIPT (a
            # restarted Redis, SCRIPT FLUSH): no SCRIPT EXISTS round trip.
            results: list[Any] = await self._script(keys=keys, args=args)
        except asyncio.CancelledError as stopped:  # the hub is stopping
            for *_, done in batch:
                _call(done, stopped)
            raise
        except Exception as exc:  # the connection or the call failed: every publish of it did
            results = [exc] * len(batch)
        if len(results) != len(batch):  # cannot happen with our script; never lose a done
            results = [RuntimeError(f"publish script answered {len(results)} of {len(batch)}")]
            results *= len(batch)
        for (*_, done), result in zip(batch, results, strict=True):
            _call(done, result)


def _call(done: Done, result: Any) -> None:
    try:
        done(result)
    except Exception:
        logger.exception("a publish callback failed")
