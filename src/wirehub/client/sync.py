"""``SyncHubClient``: the blocking facade for scripts, notebooks and threads.

It runs a :class:`~wirehub.client.HubClient` on a private event-loop thread
and blocks the caller on each request; callbacks run on that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

from wirehub.client.connection import HubClient

__all__ = ["SyncHubClient"]

T = TypeVar("T")


class SyncHubClient:
    """Blocking facade for scripts: a :class:`HubClient` on a private event-loop thread.

    ::

        with SyncHubClient("ws://127.0.0.1:8000/ws") as hub:
            hub.join("lobby")
            print(hub.publish("lobby", {"text": "hi"}))
            print(hub.recv(timeout=5))
    """

    def __init__(self, url: str, *, batch: bool = False, **kwargs: Any) -> None:
        """Keyword arguments are :class:`HubClient`'s (``batch=True``: batched frames)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._inbox: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._arrived = threading.Condition()

        async def build() -> HubClient:
            client = HubClient(url, batch=batch, **kwargs)
            for kind in ("message", "direct", "broadcast"):
                client.on(kind, self._put)
            return await client.connect()

        try:
            self.client: HubClient = self._call(build())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: ThreadFuture[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _put(self, frame: dict[str, Any]) -> None:
        with self._arrived:
            self._inbox.append(frame)
            self._arrived.notify_all()

    @property
    def client_id(self) -> str | None:
        """The id given, else the one the hub assigned (kept across reconnects)."""
        return self.client.client_id

    def join(self, room: str, *, since: int | None = None) -> dict[str, Any]:
        """:meth:`HubClient.join`, blocking; the room's messages arrive via :meth:`recv`."""
        return self._call(self.client.join(room, since=since))

    def leave(self, room: str) -> dict[str, Any]:
        """:meth:`HubClient.leave`, blocking."""
        return self._call(self.client.leave(room))

    def publish(
        self, room: str, data: Any, *, echo: bool = False, idempotency_key: str | None = None
    ) -> int:
        """:meth:`HubClient.publish`, blocking until the hub's ack; returns the offset."""
        return self._call(
            self.client.publish(room, data, echo=echo, idempotency_key=idempotency_key)
        )

    def direct(self, to: str, data: Any) -> None:
        """:meth:`HubClient.direct`, blocking (NotFound if ``to`` is not connected)."""
        self._call(self.client.direct(to, data))

    def presence(self, room: str) -> dict[str, Any]:
        """:meth:`HubClient.presence`, blocking: ``{room, members, member_count}``."""
        return self._call(self.client.presence(room))

    def run_job(
        self,
        job: str,
        args: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[float, str | None], Any] | None = None,
        on_output: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Submit and block until the result; callbacks run on the client's thread."""

        async def run() -> Any:
            handle = await self.client.submit(
                job, args, on_progress=on_progress, on_output=on_output
            )
            return await handle.result(timeout)

        return self._call(run())

    def upload(self, source: str | os.PathLike[str] | bytes, **kwargs: Any) -> dict[str, Any]:
        """:meth:`HubClient.upload`, blocking until ``upload.complete``."""
        return self._call(self.client.upload(source, **kwargs))

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Next ``message``/``direct``/``broadcast`` frame; TimeoutError if none in time."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: bool(self._inbox), timeout):
                raise TimeoutError(f"nothing received within {timeout}s")
            return self._inbox.popleft()

    def close(self) -> None:
        """Close the connection for good and stop the client's thread (``with`` does it)."""
        with contextlib.suppress(Exception):
            self._call(self.client.close(), timeout=10)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SyncHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
