"""The examples run as documented."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from pathlib import Path

import uvicorn

from support import open_client, unused_port

ROOT = Path(__file__).resolve().parents[2]


async def test_notifier_thread_pushes_notices(monkeypatch):
    monkeypatch.setenv("NOTIFIER_INTERVAL", "0.05")
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("examples.notifier.app", None)
    module = importlib.import_module("examples.notifier.app")
    port = unused_port()
    server = uvicorn.Server(uvicorn.Config(module.app, port=port, log_config=None))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        client = await open_client(f"ws://127.0.0.1:{port}/ws", "listener")
        await client.request("join", room="notices")
        notices = [await client.wait_for("message", room="notices") for _ in range(3)]
        numbers = [n["data"]["n"] for n in notices]
        assert numbers == sorted(numbers) and len(set(numbers)) == 3
        assert all(n["data"]["kind"] == "system" and n["from"] == "$hub" for n in notices)
        await client.close()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not module.app.state.notifier._thread.is_alive()
