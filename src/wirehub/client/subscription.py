"""Delivering frames to user code: callbacks that cannot kill the reader, and iterators.

A callback that raises (or a coroutine callback that fails later) is logged,
never propagated: one bad handler must not stop the connection's reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["Callback", "Subscription", "call_safely"]

logger = logging.getLogger("wirehub.client")

Callback = Callable[[dict[str, Any]], "Awaitable[None] | None"]


class _Subscribable(Protocol):
    def on(self, kind: str, callback: Callback) -> Callable[[], None]: ...


def call_safely(fn: Callable[..., Any], *args: Any) -> None:
    """Run a user callback; schedule it if it is a coroutine; never let it kill the reader."""
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(_log_task_error)
    except Exception:
        logger.exception("client callback %r failed", fn)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("client callback failed", exc_info=task.exception())


class Subscription:
    """Frames of some kinds (and one room, or all) queued for ``async for``.

    The queue holds at most ``maxsize`` frames; when it is full the oldest is
    dropped rather than block the connection's reader.
    """

    def __init__(
        self, client: _Subscribable, room: str | None, kinds: tuple[str, ...], maxsize: int
    ) -> None:
        self.room = room
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self._offs = [client.on(kind, self._put) for kind in kinds]

    def _put(self, frame: dict[str, Any]) -> None:
        if self.room is not None and frame.get("room") != self.room:
            return
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest rather than block the reader
        self._queue.put_nowait(frame)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._queue.get()

    async def get(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame, waiting up to ``timeout`` seconds."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def get_nowait(self) -> dict[str, Any] | None:
        """The next frame already queued, or None."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def aclose(self) -> None:
        """Stop queueing frames (``async with`` calls it); what is queued can still be read."""
        for off in self._offs:
            with contextlib.suppress(ValueError):
                off()
        self._offs = []

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
