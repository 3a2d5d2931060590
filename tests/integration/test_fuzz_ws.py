"""Property test: random and mutated frames thrown at a real hub while others chat.

The hub runs in its own thread (its own event loop) with two well-behaved
clients exchanging numbered messages the whole time; hypothesis drives a
synchronous WebSocket client that sends hostile frames. For every example:
each hostile frame gets a reply or an ``error`` frame with a known code
(checked by sending a ``ping`` sentinel after it and reading up to its
``pong``), and the hub keeps serving. At the end the listener has every
message the talker published, in order, and neither the ``wirehub`` nor the
``uvicorn`` loggers recorded an error or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from support import TIMEOUT, RunningHub, WSClient, open_client, start_hub

MAX_FRAME = 4096
ERROR_CODES = {
    "bad_request",
    "unknown_type",
    "not_found",
    "forbidden",
    "too_large",
    "limit_exceeded",
    "rate_limited",
    "conflict",
}
TYPES = [
    "join",
    "leave",
    "publish",
    "direct",
    "presence",
    "ping",
    "job.submit",
    "job.cancel",
    "upload.start",
    "upload.finish",
    "welcome",
    "",
    "x" * 300,
]
ROOMS = st.one_of(
    st.sampled_from(
        ["traffic", "lobby", "$hub.clients", "$jobs", "", " ", "a b", "x" * 201, "\x00"]
    ),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def protocol_frames(draw: st.DrawFn) -> dict[str, Any]:
    """Frames that look like the protocol, with wrong, missing or extreme fields."""
    frame: dict[str, Any] = {"type": draw(st.sampled_from(TYPES) | st.text(max_size=10))}
    fields = {
        "room": ROOMS,
        "data": JSON,
        "since": st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=5),
        "ref": st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=140) | JSON,
        "to": st.sampled_from(["listener", "talker", "nobody", ""]) | st.text(max_size=10),
        "echo": st.booleans(),
        "job": st.text(max_size=12),
        "args": JSON,
        "name": st.text(max_size=20),
        "size": st.integers(min_value=-5, max_value=2**40),
        "sha256": st.text(alphabet="0123456789abcdef", min_size=60, max_size=66),
        "upload_id": st.text(max_size=40),
        "job_id": st.text(max_size=40),
    }
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=5, unique=True)):
        frame[key] = draw(fields[key])
    return frame


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid frame's text, cut, spliced or with a character replaced."""
    text = json.dumps(draw(protocol_frames()))
    at = draw(st.integers(min_value=0, max_value=len(text)))
    how = draw(st.sampled_from(["cut", "insert", "replace", "repeat"]))
    junk = draw(st.text(min_size=1, max_size=5))
    if how == "cut":
        return text[:at]
    if how == "insert":
        return text[:at] + junk + text[at:]
    if how == "replace":
        return text[:at] + junk + text[at + 1 :]
    return text * draw(st.integers(min_value=2, max_value=8))


HOSTILE = st.one_of(
    protocol_frames().map(json.dumps),  # json: ints beyond 64 bits too
    mutated(),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.integers(min_value=MAX_FRAME - 64, max_value=MAX_FRAME * 3).map(
        lambda n: '{"type":"publish","room":"traffic","data":"' + "x" * n + '"}'
    ),
)


class Traffic:
    """The hub in a thread, and two clients chatting in room ``traffic``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-hub", daemon=True)
        self.running: RunningHub | None = None
        self.sent: list[int] = []
        self.received: list[int] = []
        self._stop = asyncio.Event()
        self._task: Any = None

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.running = self.call(
            start_hub(
                limits={"max_frame": MAX_FRAME},
                jobs={"modules": ["jobs_fixtures"]},
                stats_interval=0,
            )
        )
        self._task = asyncio.run_coroutine_threadsafe(self._chat(), self.loop)

    async def _chat(self) -> None:
        assert self.running is not None
        listener = await open_client(self.running.ws, "listener")
        talker = await open_client(self.running.ws, "talker")
        await listener.request("join", room="traffic")
        await talker.request("join", room="traffic")

        async def listen(client: WSClient) -> None:
            while True:
                frame = await client.recv(timeout=60)
                if frame["type"] == "message" and frame["from"] == "talker":
                    self.received.append(frame["data"])

        reader = asyncio.create_task(listen(listener))
        try:
            for n in itertools.count():
                ack = await talker.request("publish", room="traffic", data=n)
                assert ack["type"] == "ack", ack
                self.sent.append(n)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.005)
                    break
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while (
                len(self.received) < len(self.sent) and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.01)
        finally:
            reader.cancel()
            await talker.close()
            await listener.close()

    def finish(self) -> None:
        """Stop chatting; raise if the talker failed."""
        self.loop.call_soon_threadsafe(self._stop.set)
        self._task.result(30)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.call_soon_threadsafe(self._stop.set)
            self._task.result(30)
        if self.running is not None:
            self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    env = Traffic()
    env.start()
    yield env
    env.stop()


_count = itertools.count()


def _problems(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in records
        if r.name.startswith(("wirehub", "uvicorn")) and (r.exc_info or r.levelno >= logging.ERROR)
    ]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.lists(HOSTILE, min_size=1, max_size=8))
def test_hostile_frames_get_an_answer_and_hurt_nobody(traffic, caplog, frames):
    caplog.set_level(logging.INFO)
    assert traffic.running is not None
    with connect(
        f"{traffic.running.ws}?client_id=fuzz{next(_count)}", open_timeout=TIMEOUT, max_size=2**22
    ) as ws:
        assert orjson.loads(ws.recv(TIMEOUT))["type"] == "welcome"
        for i, frame in enumerate(frames):
            ws.send(frame)
            ws.send(orjson.dumps({"type": "ping", "ref": f"sentinel-{i}"}).decode())
            answers = []
            while True:
                reply = orjson.loads(ws.recv(TIMEOUT))
                if reply.get("type") == "pong" and reply.get("ref") == f"sentinel-{i}":
                    break
                answers.append(reply)
            if _is_pong(frame):
                continue  # the answer to the hub's heartbeat ping: no reply by design
            assert answers, f"no answer to {frame!r}"
            for reply in answers:
                if reply["type"] == "error":
                    assert reply["code"] in ERROR_CODES, reply
    assert _problems(caplog.records) == []


def _is_pong(frame: str | bytes) -> bool:
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(decoded, dict)
        and decoded.get("type") == "pong"
        and not isinstance(decoded.get("ref"), (dict, list, float, bool))
    )


def test_after_the_fuzzing_the_others_lost_nothing(traffic, caplog):
    caplog.set_level(logging.INFO)
    traffic.finish()
    assert traffic.sent, "the talker published nothing"
    assert traffic.received == traffic.sent  # every message, in order, none invented
    assert traffic.running is not None
    assert traffic.running.hub.accepting
    with connect(f"{traffic.running.ws}?client_id=late", open_timeout=TIMEOUT) as ws:
        assert orjson.loads(ws.recv(TIMEOUT))["type"] == "welcome"
    assert _problems(caplog.records) == []
