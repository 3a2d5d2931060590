"""A background thread that pushes a system notice to every subscriber every N seconds.

The tutorials do this with a thread and a hand-made thread-safe queue per
client. With wirehub the thread calls ``hub.publish_threadsafe``; the hub's
loop does the fan-out and each subscriber's writer delivers at its own pace.

    uvicorn examples.notifier.app:app        # then open http://127.0.0.1:8000/
    NOTIFIER_INTERVAL=1 uvicorn examples.notifier.app:app

Clients join the ``notices`` room to receive them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from wirehub import Hub, Settings

hub = Hub(Settings())


class Notifier:
    """A plain thread: it knows nothing of asyncio, only the thread-safe hub API."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            notice = {
                "kind": "system",
                "text": "scheduled notice",
                "n": self.sent,
                "at": time.time(),
            }
            # Returns a concurrent.futures.Future; .result() waits for the offset.
            hub.publish_threadsafe("notices", notice).result(timeout=5)
            self.sent += 1


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub.lifespan(app):
        notifier = Notifier(float(os.environ.get("NOTIFIER_INTERVAL", "5")))
        notifier.start()
        app.state.notifier = notifier
        try:
            yield
        finally:
            # Off the loop: a publish the thread is waiting on needs the loop to
            # finish, so joining the thread here would stall both for the timeout.
            await asyncio.to_thread(notifier.stop)


app = FastAPI(lifespan=lifespan)
app.include_router(hub.router)
