"""Factory fixtures that start real servers and close what they made."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from redis_support import (  # noqa: F401 - fixtures: redis-server, Celery worker, job hubs
    celery_worker,
    jobs_hub,
    jobs_runner,
    jobs_settings,
    redis_server,
    redis_url,
)
from support import RunningHub, WSClient, open_client, start_hub


@pytest.fixture
async def hub_server() -> AsyncIterator[Callable[..., Awaitable[RunningHub]]]:
    """``running = await hub_server(limits={"max_frame": 1024})`` → a live hub."""
    started: list[RunningHub] = []

    async def factory(settings: Any = None, **overrides: Any) -> RunningHub:
        running = await start_hub(settings, **overrides)
        started.append(running)
        return running

    yield factory
    for running in reversed(started):
        await running.stop()


@pytest.fixture
async def ws_client() -> AsyncIterator[Callable[..., Awaitable[WSClient]]]:
    """``client = await ws_client(running.ws, "alice")`` → a connected client."""
    clients: list[WSClient] = []

    async def factory(url: str, client_id: str | None = None, **kwargs: Any) -> WSClient:
        client = await open_client(url, client_id, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def hub(hub_server: Callable[..., Awaitable[RunningHub]]) -> RunningHub:
    """A hub with default settings (stats off)."""
    return await hub_server()
