"""Every ``python`` block of docs/api.md runs as written, against a real hub (issue 14).

The page promises that its examples run; this holds it to that, the way a reader would
try them. The hub is built from the page's own ``hub.toml`` block (its service and bridge,
on free ports), served by uvicorn on loopback; the browser ``web-1`` the page mentions is a
real WebSocket client joined to ``orders`` and ``tcp:plc``. The blocks then run in page
order in one namespace:

* a block with a top-level ``await`` runs on the hub's loop (the body of an async handler);
* a block without one runs in a worker thread, as a script would (so a blocking
  ``SyncHubClient`` or ``future.result()`` never stalls the hub it talks to);
* ``ws://127.0.0.1:8000/ws`` is the running hub's URL, ``hub`` is the running hub again
  before each block (the tour builds a ``Hub`` of its own), the working directory holds
  the page's ``hub.toml``, and ``print`` is recorded.

Then the test checks what a user would see: what ``web-1`` received (messages, directs,
broadcasts, the kick, job events, device data), and the printed lines the page's comments
promise.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from support import FACTOR, TIMEOUT, RunningHub, WSClient, open_client, start_hub, unused_port
from wirehub.jobs.api import REGISTRY
from wirehub.settings import load_settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DOC_URL = "ws://127.0.0.1:8000/ws"
BLOCK_TIMEOUT = 30 * FACTOR


def blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block of ``lang`` in the page, in order."""
    text = PAGE.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == lang
    ]


def hub_toml() -> str:
    """The page's ``hub.toml`` block, as written."""
    found = [code for _, code in blocks("toml") if code.startswith("# hub.toml\n")]
    assert len(found) == 1, "docs/api.md must have exactly one '# hub.toml' block"
    return found[0]


class Browser:
    """``web-1``: a WebSocket client that records every frame, reconnecting after a kick."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[dict[str, Any]] = []
        self.closes: list[tuple[int | None, str]] = []
        self.changed = asyncio.Event()
        self._client: WSClient | None = None
        self._reader: asyncio.Task[None] | None = None

    async def ensure_connected(self, hub: Any) -> None:
        if self._reader is not None and not self._reader.done():
            if "web-1" in hub.node.clients:
                return
            # Kicked by the example before: let the close arrive, then come back.
            await asyncio.wait_for(self._reader, TIMEOUT)
        self._client = await open_client(self.url, "web-1")
        for room in ("orders", "tcp:plc"):
            joined = await self._client.request("join", room=room)
            assert joined["type"] == "joined", joined
        self._reader = asyncio.create_task(self._read(self._client))

    async def _read(self, client: WSClient) -> None:
        try:
            while True:
                self.frames.append(orjson.loads(await client.ws.recv()))
                self.changed.set()
        except ConnectionClosed:
            rcvd = client.ws.protocol.close_rcvd
            self.closes.append((rcvd.code, rcvd.reason) if rcvd else (None, ""))
            self.changed.set()

    async def until(self, what: str, check: Callable[[], bool]) -> None:
        """Wait (bounded) until ``check()`` holds; the failure names what was missing."""
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not check():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                pytest.fail(f"web-1 never got {what}; it got {self.frames} {self.closes}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def got(self, kind: str, **fields: Any) -> bool:
        return any(
            f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())
            for f in self.frames
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, TIMEOUT)


async def run_block(code: str, ns: dict[str, Any], name: str) -> None:
    compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if compiled.co_flags & inspect.CO_COROUTINE:
        await asyncio.wait_for(eval(compiled, ns), BLOCK_TIMEOUT)
    else:
        await asyncio.wait_for(asyncio.to_thread(exec, compiled, ns), BLOCK_TIMEOUT)


@pytest.fixture
def registry():
    """Jobs the page defines (``answer``, ``count_lines``) do not outlive the test."""
    saved = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(saved)


@pytest.fixture
def page_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's ``hub.toml`` in the working directory, and the hub's copy of it.

    The copy runs the service with this interpreter on a free port and puts the bridge
    on port 0; the examples' own ``load_settings("hub.toml")`` reads the page's text.
    """
    toml = hub_toml()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hub.toml").write_text(toml)
    served = (
        toml.replace('"python"', repr(sys.executable).replace("'", '"'))
        .replace("9000", str(unused_port()))
        .replace("port = 7000", "port = 0")
    )
    config = tmp_path / "served.toml"
    config.write_text(served)
    return config


@pytest.fixture
async def page_hub(page_config: Path, tmp_path: Path) -> Any:
    """The hub the page describes, served by uvicorn on a free port."""
    settings = load_settings(page_config, uploads={"dir": str(tmp_path / "spool")})
    running = await start_hub(settings)
    try:
        yield running
    finally:
        await running.stop()


async def test_every_example_on_the_api_page_runs(page_hub: RunningHub, registry: None) -> None:
    running = page_hub
    assert running.hub.services["model"].ready and running.hub.bridges["plc"].listening
    browser = Browser(running.ws)
    printed: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        printed.append(" ".join(str(a) for a in args))

    ns: dict[str, Any] = {"__name__": "api_examples", "asyncio": asyncio, "print": record}
    examples = blocks("python")
    assert len(examples) >= 15, "the page lost its examples"
    try:
        for line, code in examples:
            await browser.ensure_connected(running.hub)
            ns["hub"] = running.hub
            try:
                await run_block(code.replace(DOC_URL, running.ws), ns, f"docs/api.md:{line}")
            except Exception as exc:
                raise AssertionError(f"the example at docs/api.md:{line} failed: {exc!r}") from exc

        # What the browser saw, section by section (in order on each connection).
        for kind, fields in (
            ("message", {"room": "orders", "data": {"sku": "A1", "qty": 2}}),
            ("message", {"room": "orders", "from": "stock-service"}),
            ("direct", {"data": {"export": "ready"}, "from": "$hub"}),
            ("broadcast", {"data": {"maintenance": "in 5 minutes"}}),
            ("direct", {"data": {"door": "open"}}),
            ("broadcast", {"data": {"alarm": False}}),
            ("message", {"room": "orders", "data": {"typing": "web-2"}, "from": "web-2"}),
            ("job.result", {"result": "word0 word1 word2"}),
            ("message", {"room": "tcp:plc", "data": "temp=21.5"}),
        ):
            await browser.until(f"{kind} {fields}", lambda k=kind, f=fields: browser.got(k, **f))
        assert (4003, "account closed") in browser.closes

        # The printed lines the page's comments promise.
        out = "\n".join(printed)
        for promised in (
            "not_found client 'web-9' is not connected",
            "chat.typing.ok",
            "invalid arguments for job 'answer': question:",
            "cancelled",
            "b'STOP\\n'",
            "7000 model",
            "131072",
            "invalid configuration in hub.toml",
            "{'sku': 'D4'}",
            "job.result word0 word1 word2",
        ):
            assert promised in out, f"{promised!r} was not printed:\n{out}"
        assert "3" in printed, "count_lines did not count the uploaded file's 3 lines"
        assert "[]" in printed, "a readiness check failed"
    finally:
        await browser.close()
