"""examples/supervised_service runs as its README says."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from support import FACTOR, unused_port

ROOT = Path(__file__).resolve().parents[2]


async def test_route_calls_the_supervised_backend(monkeypatch):
    monkeypatch.setenv("BACKEND_PORT", str(unused_port()))
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("examples.supervised_service.app", None)
    module = importlib.import_module("examples.supervised_service.app")
    port = unused_port()
    server = uvicorn.Server(uvicorn.Config(module.app, port=port, log_config=None))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the app did not start"
        await asyncio.sleep(0.01)
    backend = module.hub.services["backend"]
    try:
        # The hub took no request before the backend printed its ready line.
        assert backend.ready and any("Server - Started" in e.line for e in backend.tail())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            first = (await http.get("/hello/ada")).json()
            second = (await http.get("/hello/bob")).json()
        assert first["backend"]["greeting"] == "Hello, ada!"
        assert second["backend"] == {"greeting": "Hello, bob!", "served": 2, "pid": backend.pid}
        pgid = backend.pid
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Stopped with the app: SIGTERM, a clean exit, nothing of its group left.
    assert backend.state == "stopped" and backend.exit_code == 0
    assert backend.tail(1)[0].line == "INFO  Server - Stopped"
    deadline = time.monotonic() + 10 * FACTOR
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "backend process group still alive"
        await asyncio.sleep(0.02)
