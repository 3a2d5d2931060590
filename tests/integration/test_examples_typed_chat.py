"""examples/typed_chat runs as its README says: ``uvicorn examples.typed_chat.app:app``.

One real uvicorn subprocess for the module (started from the repository root, on a free
port, ready on uvicorn's "Uvicorn running on" line), real WebSocket clients, a real SSE
client (httpx-sse), plain HTTP and the CLI: both typed handlers, the typed ``chat:*`` rooms,
the AsyncAPI document (served and printed by ``wirehub asyncapi``), and a room followed over
Server-Sent Events. Each test uses its own rooms, so they share the server without seeing
each other.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from support import FACTOR, TIMEOUT, HubProcess, WSClient, open_client, unused_port

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
#: The README's command: the uvicorn of this environment.
UVICORN = Path(sys.executable).with_name("uvicorn")
SSE = {"Accept": "text/event-stream"}


#: The example under uvicorn: a process with its output, as HubProcess is for wirehub serve.
Example = HubProcess


def _pump(example: Example, ready: threading.Event) -> None:
    """Collect the process's output; set ``ready`` on uvicorn's listening line (or at exit)."""
    assert example.proc.stdout is not None
    for raw in example.proc.stdout:
        line = raw.decode(errors="replace")
        example.lines.append(line)
        if "Uvicorn running on" in line:
            ready.set()
    ready.set()


@pytest.fixture(scope="module")
def example() -> Iterator[Example]:
    """``uvicorn examples.typed_chat.app:app --port N`` from the repository root."""
    assert UVICORN.exists(), f"uvicorn is not installed next to {sys.executable}"
    port = unused_port()
    proc = subprocess.Popen(
        [str(UVICORN), "examples.typed_chat.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    running = Example(proc, port)
    ready = threading.Event()
    pump = threading.Thread(target=_pump, args=(running, ready), daemon=True)
    pump.start()
    try:
        assert ready.wait(15 * FACTOR), f"not listening:\n{running.output()}"
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{running.output()}"
        yield running
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal it shut down on, so a clean stop reports SIGTERM.
        assert proc.wait(15 * FACTOR) in (0, -signal.SIGTERM), running.output()
        pump.join(5 * FACTOR)
        assert "Finished server process" in running.output(), running.output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pump.join(5)
        assert proc.stdout is not None
        proc.stdout.close()
    assert "Traceback" not in running.output(), running.output()


@pytest.fixture
async def client(example: Example) -> AsyncIterator[Callable[[str], Any]]:
    """``await client("ann")``: a WebSocket client of the example, closed at teardown."""
    opened: list[WSClient] = []

    async def connect(client_id: str) -> WSClient:
        opened.append(await open_client(example.ws, client_id))
        return opened[-1]

    yield connect
    for ws in opened:
        await ws.close()


def fields(error: dict[str, Any]) -> dict[str, str]:
    assert error["type"] == "error" and error["code"] == "bad_request", error
    return {entry["field"]: entry["message"] for entry in error["errors"]}


async def test_typing_notice_and_bad_typing_frame(client):
    ann, bob = await client("ann-1"), await client("bob-1")
    await ann.request("join", room="chat:t1")
    await bob.request("join", room="activity:t1")

    reply = await ann.request("chat.typing", room="chat:t1")
    assert reply["type"] == "chat.typing.ok" and reply["room"] == "chat:t1"
    notice = await bob.wait_for("message", room="activity:t1")
    assert notice["from"] == "ann-1"
    assert notice["data"] == {
        "event": "typing",
        "room": "chat:t1",
        "client_id": "ann-1",
        "active": True,
    }

    bad = await ann.request("chat.typing", room="lobby", active="maybe", mood="x")
    assert set(fields(bad)) == {"room", "active", "mood"}
    assert "should match pattern" in fields(bad)["room"]
    assert fields(bad)["mood"] == "Extra inputs are not permitted"

    # The connection goes on, and the handler checks membership after validation.
    reply = await ann.request("chat.typing", room="chat:t1", active=False)
    assert reply["type"] == "chat.typing.ok"
    stopped = await bob.wait_for("message", room="activity:t1")
    assert stopped["data"]["active"] is False
    refused = await bob.request("chat.typing", room="chat:t1")
    assert refused["code"] == "forbidden" and refused["room"] == "chat:t1"


async def test_reaction_tally_reply_and_bad_reaction(client):
    ann = await client("ann-2")
    await ann.request("join", room="chat:t2")
    await ann.request("join", room="activity:t2")

    first = await ann.request("chat.react", room="chat:t2", offset=1, emoji="+1")
    assert first == {
        "type": "chat.react.ok",
        "room": "chat:t2",
        "offset": 1,
        "emoji": "+1",
        "count": 1,
        "ref": first["ref"],
    }
    second = await ann.request("chat.react", room="chat:t2", offset=1, emoji="+1")
    assert second["count"] == 2
    tallies = [await ann.wait_for("message", room="activity:t2") for _ in range(2)]
    assert [t["data"]["count"] for t in tallies] == [1, 2]
    assert tallies[0]["data"]["event"] == "reaction"

    bad = await ann.request("chat.react", room="chat:t2", offset=0, emoji="thumbs")
    assert fields(bad) == {
        "offset": "Input should be greater than or equal to 1",
        "emoji": "Input should be '+1', 'heart', 'laugh' or 'party'",
    }
    assert bad["message"].startswith("invalid chat.react (Reaction): offset:")
    missing = await ann.request("chat.react", room="chat:t2")
    assert fields(missing) == {"offset": "Field required", "emoji": "Field required"}
    third = await ann.request("chat.react", room="chat:t2", offset=1, emoji="+1")
    assert third["count"] == 3


async def test_typed_room_refuses_bad_publish_and_delivers_good(client, example):
    ann, bob = await client("ann-3"), await client("bob-3")
    await ann.request("join", room="chat:t3")
    await bob.request("join", room="chat:t3")

    bad = await ann.request("publish", room="chat:t3", data={"txt": "oops"})
    assert fields(bad) == {
        "data.text": "Field required",
        "data.txt": "Extra inputs are not permitted",
    }
    assert bad["room"] == "chat:t3"
    async with httpx.AsyncClient(base_url=example.http, timeout=TIMEOUT * FACTOR) as http:
        refused = await http.post("/api/rooms/chat:t3/publish", json={"data": {"text": ""}})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"]["errors"] == [
            {"field": "data.text", "message": "String should have at least 1 character"}
        ]

    ack = await ann.request("publish", room="chat:t3", data={"text": "hi"})
    assert ack["type"] == "ack"
    # Nothing refused was delivered: bob's first message is the good one, defaults filled in.
    got = await bob.wait_for("message", room="chat:t3")
    assert got["offset"] == ack["offset"] and got["from"] == "ann-3"
    assert got["data"] == {"text": "hi", "reply_to": None}


async def test_asyncapi_lists_both_handlers_and_the_room_model(example):
    async with httpx.AsyncClient(base_url=example.http, timeout=TIMEOUT * FACTOR) as http:
        document = (await http.get("/asyncapi.json")).raise_for_status().json()
        page = await http.get("/asyncapi")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

    assert document["asyncapi"] == "3.0.0"
    operations = document["operations"]
    assert operations["receive.chat.typing"]["summary"] == (
        "Tell the room's activity feed that this client types (or stopped)."
    )
    react = operations["receive.chat.react"]
    assert {m["$ref"] for m in react["reply"]["messages"]} == {
        "#/channels/hub/messages/chat.react.ok",
        "#/channels/hub/messages/error",
    }
    schemas = document["components"]["schemas"]
    assert {"ChatMessage", "Typing", "Reaction", "Reacted"} <= set(schemas)
    assert schemas["Reaction"]["properties"]["emoji"]["enum"] == ["+1", "heart", "laugh", "party"]

    publish = document["channels"]["hub"]["messages"]["publish.room.chat__"]
    assert publish["payload"]["properties"]["data"]["$ref"] == "#/components/schemas/ChatMessage"
    assert "chat:*" in publish["title"]


async def test_sse_follows_a_room_published_over_websocket(client, example):
    ann = await client("ann-4")
    await ann.request("join", room="chat:t4")  # a WebSocket client publishes where it is a member
    async with (
        httpx.AsyncClient(base_url=example.http, timeout=TIMEOUT * FACTOR) as http,
        aconnect_sse(http, "GET", "/api/rooms/chat:t4/events", headers=SSE) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        events = source.aiter_sse()
        joined = await asyncio.wait_for(anext(events), TIMEOUT * FACTOR)
        assert joined.event == "joined"  # subscribed: a publish from now on reaches it

        ack = await ann.request("publish", room="chat:t4", data={"text": "to the feed"})
        assert ack["type"] == "ack", ack
        event = await asyncio.wait_for(anext(events), TIMEOUT * FACTOR)
        assert event.event == "message", (event.event, event.data)
        assert int(event.id) == ack["offset"]
        frame = orjson.loads(event.data)
        assert frame["from"] == "ann-4"
        assert frame["data"] == {"text": "to the feed", "reply_to": None}


async def test_wirehub_asyncapi_prints_the_same_operations(example):
    """``wirehub asyncapi --app examples.typed_chat.app:app``, without serving it."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("wirehub")),
        "asyncapi",
        "--app",
        "examples.typed_chat.app:app",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2 * FACTOR)
    assert proc.returncode == 0, errs.decode()
    printed = orjson.loads(out)
    async with httpx.AsyncClient(base_url=example.http, timeout=TIMEOUT * FACTOR) as http:
        served = (await http.get("/asyncapi.json")).raise_for_status().json()
    assert set(printed["operations"]) == set(served["operations"])
    assert printed["components"]["schemas"] == served["components"]["schemas"]
