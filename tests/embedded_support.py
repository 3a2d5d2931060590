"""The README's tour app on plain uvicorn (no HubServer): an app that embeds the hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from support import TIMEOUT, unused_port
from wirehub import Hub, Settings

__all__ = ["serve", "tour_app"]


def tour_app(**settings: Any) -> tuple[FastAPI, Hub]:
    """The README's "A tour" app, as written there."""
    hub = Hub(Settings(stats_interval=0, **settings))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router)

    @app.post("/orders")
    async def create_order(order: dict) -> dict:  # type: ignore[type-arg]
        offset = await hub.publish("orders", order)
        return {"offset": offset}

    return app, hub


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Plain uvicorn (no HubServer), as a user runs their own app; yields its base URL."""
    port = unused_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 6 * TIMEOUT)
