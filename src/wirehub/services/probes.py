"""Readiness: a log line, a TCP port that accepts, or an HTTP URL that answers 2xx.

:func:`wait_ready` races the probe against the process exit, a stop request
and ``ready_timeout``, so a service that dies while starting fails at once
instead of after the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, Literal

import httpx

from wirehub.services.spec import ReadyCheck

__all__ = ["Outcome", "make_probe", "probe_http", "probe_tcp", "wait_ready"]

#: How ``wait_ready`` ended.
Outcome = Literal["ready", "exited", "stopped", "timeout"]

POLL_INTERVAL = 0.1


def _split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def probe_tcp(target: str, *, interval: float = POLL_INTERVAL) -> None:
    """Return once ``host:port`` accepts a connection."""
    host, port = _split_host_port(target)
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(interval)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def probe_http(url: str, *, interval: float = POLL_INTERVAL) -> None:
    """Return once ``GET url`` answers with a 2xx status."""
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                response = await client.get(url)
                if response.is_success:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(interval)


def make_probe(check: ReadyCheck, log_matched: asyncio.Event) -> Awaitable[object] | None:
    """The awaitable that completes when the service is ready; None: ready once started."""
    if check.log is not None:
        return log_matched.wait()
    if check.tcp is not None:
        return probe_tcp(check.tcp)
    if check.http is not None:
        return probe_http(check.http)
    return None


async def wait_ready(
    probe: Awaitable[object] | None,
    exited: asyncio.Future[int],
    stop: asyncio.Event,
    timeout: float,
) -> Outcome:
    """Race the probe against exit, stop and the timeout; cancel whatever is left."""
    if probe is None:
        return "exited" if exited.done() else "ready"
    probe_task: asyncio.Future[Any] = asyncio.ensure_future(probe)
    stop_task: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    race: set[asyncio.Future[Any]] = {probe_task, exited, stop_task}
    try:
        done, _ = await asyncio.wait(race, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (probe_task, stop_task):
            task.cancel()
        await asyncio.gather(probe_task, stop_task, return_exceptions=True)
    if stop_task in done or stop.is_set():
        return "stopped"
    if exited in done:
        return "exited"
    if probe_task in done and not probe_task.cancelled() and probe_task.exception() is None:
        return "ready"
    return "timeout"
