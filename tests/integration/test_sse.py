"""Server-Sent Events against a real server, read by a real SSE client (httpx-sse).

``GET /api/rooms/{room}/events`` and ``GET /api/jobs/{id}/events``: live messages
with offset ids, a resume with ``Last-Event-ID`` that replays exactly what was
missed (or one ``gap``), the ``/ws`` auth and grants, presence of kind ``sse``,
the slow-consumer close, heartbeat comments, and a job followed to its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from security_support import jwt_auth, token
from support import FACTOR, TIMEOUT

SSE = {"Accept": "text/event-stream"}


class Stream:
    """One open SSE subscription: ``await stream.next()`` is the next event."""

    def __init__(self, events: AsyncIterator[ServerSentEvent], response: httpx.Response) -> None:
        self._events = events
        self.response = response

    async def next(self, timeout: float = TIMEOUT) -> ServerSentEvent:
        return await asyncio.wait_for(anext(self._events), timeout * FACTOR)

    async def expect(self, event: str, timeout: float = TIMEOUT) -> tuple[str, dict[str, Any]]:
        got = await self.next(timeout)
        assert got.event == event, f"expected {event}, got {got.event}: {got.data}"
        return got.id, orjson.loads(got.data)

    async def messages(self, n: int) -> list[tuple[int, Any]]:
        out = []
        for _ in range(n):
            event_id, frame = await self.expect("message")
            assert int(event_id) == frame["offset"]
            out.append((frame["offset"], frame["data"]))
        return out

    async def ended(self, timeout: float = TIMEOUT) -> list[ServerSentEvent]:
        """Every event left until the server ends the stream."""
        left: list[ServerSentEvent] = []

        async def drain() -> None:
            async for event in self._events:
                left.append(event)

        await asyncio.wait_for(drain(), timeout * FACTOR)
        return left


@pytest.fixture
async def sse(hub_server):
    """``stream = await sse(running, "/api/rooms/r/events", headers=...)`` → an open stream."""
    stack = contextlib.AsyncExitStack()

    async def open_stream(running: Any, path: str, **kwargs: Any) -> Stream:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT * FACTOR)
        )
        source = await stack.enter_async_context(aconnect_sse(client, "GET", path, **kwargs))
        assert source.response.status_code == 200, await source.response.aread()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return Stream(source.aiter_sse(), source.response)

    yield open_stream
    await stack.aclose()


async def publish(running: Any, room: str, *values: Any) -> list[int]:
    """``hub.publish`` from the app's side (HTTP and WebSocket publish take the same path)."""
    return [await running.hub.publish(room, value) for value in values]


async def test_live_messages_arrive_as_message_events_with_offset_ids(hub, sse):
    stream = await sse(hub, "/api/rooms/feed/events?client_id=reader", headers=SSE)
    event_id, joined = await stream.expect("joined")
    assert joined == {
        "type": "joined",
        "room": "feed",
        "offset": 0,
        "member_count": 1,
        "members": ["reader"],
    }
    assert event_id == "0"  # a reconnect resumes from the join
    await publish(hub, "feed", {"n": 1}, "two", [3])
    assert await stream.messages(3) == [(1, {"n": 1}), (2, "two"), (3, [3])]
    # The data is the very `message` frame a WebSocket client gets.
    await publish(hub, "feed", {"n": 4})
    _, frame = await stream.expect("message")
    assert frame["type"] == "message" and frame["room"] == "feed" and frame["from"] == "$hub"


@pytest.fixture(params=["memory", "redis"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The embedded (memory) broker, and the Redis broker on a real redis-server."""
    if request.param == "memory":
        return {}
    url = request.getfixturevalue("redis_url")
    return {"redis": {"url": url, "prefix": f"sse{uuid.uuid4().hex[:6]}"}}


async def test_last_event_id_replays_exactly_the_missed_messages(hub_server, broker_settings, sse):
    hub = await hub_server(**broker_settings)
    await publish(hub, "news", *range(1, 6))
    stream = await sse(hub, "/api/rooms/news/events", headers={"Last-Event-ID": "2", **SSE})
    _, joined = await stream.expect("joined")
    assert joined["recovered"] is True and joined["offset"] == 5
    assert await stream.messages(3) == [(3, 3), (4, 4), (5, 5)]
    await publish(hub, "news", 6)
    assert await stream.messages(1) == [(6, 6)]


async def test_a_resume_past_the_kept_history_gets_one_gap(hub_server, broker_settings, sse):
    running = await hub_server(history={"size": 3}, **broker_settings)
    await publish(running, "r", *range(1, 11))
    stream = await sse(running, "/api/rooms/r/events?last_event_id=2")
    _, joined = await stream.expect("joined")
    assert joined["recovered"] is False
    gap_id, gap = await stream.expect("gap")
    assert gap == {
        "type": "gap",
        "room": "r",
        "reason": "history_trimmed",
        "since": 2,
        "first_offset": 8,
        "offset": 10,
    }
    assert gap_id == "7"  # the replay goes on from there: a reconnect does not repeat the gap
    assert await stream.messages(3) == [(8, 8), (9, 9), (10, 10)]
    await publish(running, "r", 11)
    assert await stream.messages(1) == [(11, 11)]  # exactly one gap, then live


async def test_a_resume_beyond_the_room_offset_is_a_reset_gap(hub, sse):
    await publish(hub, "fresh", "a")
    stream = await sse(hub, "/api/rooms/fresh/events", headers={"Last-Event-ID": "40"})
    await stream.expect("joined")
    gap_id, gap = await stream.expect("gap")
    assert gap["reason"] == "history_reset" and gap["since"] == 40 and gap_id == "1"


async def test_bad_requests_are_refused_before_the_stream(hub):
    async with httpx.AsyncClient(base_url=hub.http) as http:
        bad = await http.get("/api/rooms/r/events", headers={"Last-Event-ID": "x1", **SSE})
        assert bad.status_code == 400
        assert bad.json()["detail"]["code"] == "bad_request"
        assert "Last-Event-ID" in bad.json()["detail"]["message"]
        json_only = await http.get("/api/rooms/r/events", headers={"Accept": "application/json"})
        assert json_only.status_code == 406
        assert json_only.json()["detail"]["message"] == (
            "this route answers Accept: text/event-stream"
        )
        assert (await http.get("/api/rooms/r/events")).status_code == 406  # curl's */*
        bad_id = await http.get("/api/rooms/r/events?client_id=no%20spaces", headers=SSE)
        assert bad_id.status_code == 400
        assert "r" not in {room["name"] for room in (await http.get("/api/rooms")).json()}


async def test_auth_is_the_websocket_auth(hub_server, sse):
    running = await hub_server(auth=jwt_auth())
    path = "/api/rooms/chat:1/events"
    async with httpx.AsyncClient(base_url=running.http) as http:
        missing = await http.get(path, headers=SSE)
        assert missing.status_code == 401
        assert missing.json()["detail"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = await http.get(path, headers={"Authorization": "Bearer nope", **SSE})
        assert bad.status_code == 401
        other = token("bob", rooms=["chat:2"])
        refused = await http.get(path, headers={"Authorization": f"Bearer {other}", **SSE})
        assert refused.status_code == 403
        detail = refused.json()["detail"]
        assert detail == {
            "code": "forbidden",
            "message": "not allowed to join room 'chat:1'",
            "room": "chat:1",
            "action": "join",
        }
        # A join grant without a history grant: no resume.
        reader = token("carol", join=["chat:*"])
        no_history = await http.get(f"{path}?token={reader}", headers={"Last-Event-ID": "0", **SSE})
        assert no_history.status_code == 403
        assert no_history.json()["detail"]["action"] == "history"
    # The token in the header or the query; the client id is the token's subject.
    alice = token("alice", rooms=["chat:*"])
    stream = await sse(running, path, headers={"Authorization": f"Bearer {alice}", **SSE})
    await stream.expect("joined")
    assert "alice" in running.hub.node.clients
    by_query = await sse(running, f"/api/rooms/chat:2/events?token={token('dave', rooms=['*'])}")
    await by_query.expect("joined")


async def test_presence_shows_the_sse_subscriber_with_kind_sse(hub, sse, ws_client):
    watcher = await ws_client(hub.ws, "watcher")
    await watcher.request("join", room="lobby")
    stream = await sse(hub, "/api/rooms/lobby/events?client_id=feed-1")
    await stream.expect("joined")
    join = await watcher.expect("presence", event="join", client_id="feed-1")
    assert join["kind"] == "sse"
    presence = await watcher.request("presence", room="lobby")
    assert sorted(presence["members"]) == ["feed-1", "watcher"]
    async with httpx.AsyncClient(base_url=hub.http) as http:
        client = (await http.get("/api/clients/feed-1")).json()
        assert client["kind"] == "sse" and client["rooms"] == ["lobby"]
        assert 'wirehub_connections{kind="sse"} 1.0' in (await http.get("/metrics")).text
    # The SSE client sees presence events of the room too.
    await ws_client(hub.ws, "late")
    await (await ws_client(hub.ws, "joiner")).request("join", room="lobby")
    _, event = await stream.expect("presence")
    assert event["event"] == "join" and event["client_id"] == "joiner" and event["kind"] == "ws"
    # Gone when the HTTP client goes.
    await stream.response.aclose()
    await watcher.wait_for("presence", event="leave", client_id="feed-1")


async def test_heartbeat_comments_keep_the_stream_alive(hub_server):
    running = await hub_server(heartbeat={"interval": 0.1, "timeout": 5})
    async with (
        httpx.AsyncClient(base_url=running.http) as http,
        http.stream("GET", "/api/rooms/quiet/events", headers=SSE) as response,
    ):
        lines: list[str] = []

        async def read() -> None:
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": ping") >= 2:
                    return

        await asyncio.wait_for(read(), TIMEOUT * FACTOR)
    # The joined event opens the stream, with the reconnect delay and the room offset as id.
    assert lines[:3] == ["retry: 1000", "id: 0", "event: joined"]


async def test_a_slow_sse_subscriber_is_closed_and_the_others_go_on(hub_server, sse):
    running = await hub_server(
        limits={"queue_max_messages": 64, "queue_max_bytes": 256 * 1024, "close_timeout": 0.3}
    )
    healthy = await sse(running, "/api/rooms/flood/events?client_id=healthy")
    await healthy.expect("joined")
    # A raw socket that sends the request and never reads a byte: TCP backpressure.
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(
        b"GET /api/rooms/flood/events?client_id=slow HTTP/1.1\r\n"
        b"Host: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    node = running.hub.node
    while "slow" not in node.clients:
        await asyncio.sleep(0.01)
    big = "x" * 16_384
    count = 600
    received: list[int] = []
    caught_up = asyncio.Event()

    async def read_healthy() -> None:
        while len(received) < count:
            event = await healthy.next(timeout=20)
            if event.event == "message":
                received.append(orjson.loads(event.data)["data"]["n"])
                caught_up.set()

    task = asyncio.create_task(read_healthy())
    for n in range(count):
        await running.hub.publish("flood", {"n": n, "p": big})
        # A publisher a reader can keep up with: at most 8 messages ahead of it.
        while n - len(received) >= 8 and not task.done():
            caught_up.clear()
            await caught_up.wait()
    await asyncio.wait_for(task, 30 * FACTOR)
    assert received == list(range(count))  # every message, in order
    assert node.slow_consumers == 1
    assert "slow" not in node.clients and "healthy" in node.clients
    async with httpx.AsyncClient(base_url=running.http) as http:
        metrics = (await http.get("/metrics")).text
    assert "wirehub_slow_consumer_disconnects_total 1.0" in metrics
    # When the slow client finally reads, its stream ends (EOF: Connection: close).
    data = await asyncio.wait_for(reader.read(-1), TIMEOUT * FACTOR)
    assert data.startswith(b"HTTP/1.1 200") and b"event: message" in data
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.fixture
async def jobs_hub_sse(hub_server):
    return await hub_server(jobs={"modules": ["jobs_fixtures"], "concurrency": 2})


async def submit(running: Any, job: str, **args: Any) -> str:
    async with httpx.AsyncClient(base_url=running.http) as http:
        reply = await http.post("/api/jobs", json={"job": job, "args": args})
        assert reply.status_code == 202, reply.text
        return str(reply.json()["job_id"])


async def test_a_job_is_followed_to_its_result(jobs_hub_sse, sse):
    job_id = await submit(jobs_hub_sse, "count", n=3, delay=0.05)
    stream = await sse(jobs_hub_sse, f"/api/jobs/{job_id}/events", headers=SSE)
    _, joined = await stream.expect("joined")
    assert joined["room"] == f"$job:{job_id}" and joined["recovered"] is True
    rest = await stream.ended()
    kinds = [orjson.loads(e.data)["data"]["type"] for e in rest if e.event == "message"]
    assert kinds[-1] == "job.result" and "job.progress" in kinds
    last = orjson.loads(rest[-1].data)
    assert last["data"]["result"] == 6 and rest[-1].id == str(last["offset"])
    # Without Accept: text/event-stream the route is still the JSON event log.
    async with httpx.AsyncClient(base_url=jobs_hub_sse.http) as http:
        log = (await http.get(f"/api/jobs/{job_id}/events")).json()
        assert log[-1]["type"] == "job.result"
        assert (await http.get("/api/jobs/nope/events", headers=SSE)).status_code == 404


async def test_a_finished_job_replays_to_its_result_and_ends(jobs_hub_sse, sse):
    job_id = await submit(jobs_hub_sse, "echo", value="done")
    async with httpx.AsyncClient(base_url=jobs_hub_sse.http) as http:
        while (await http.get(f"/api/jobs/{job_id}")).json()["state"] != "succeeded":
            await asyncio.sleep(0.01)
    stream = await sse(jobs_hub_sse, f"/api/jobs/{job_id}/events", headers=SSE)
    await stream.expect("joined")
    rest = await stream.ended()
    assert orjson.loads(rest[-1].data)["data"] == {
        **orjson.loads(rest[-1].data)["data"],
        "type": "job.result",
        "result": "done",
    }
    assert f"$job:{job_id}" not in {
        r for c in jobs_hub_sse.hub.node.clients.values() for r in c.rooms
    }


async def test_a_subscriber_on_one_node_is_a_member_on_every_node(
    hub_server, redis_url, sse, ws_client
):
    shared = {"redis": {"url": redis_url, "prefix": f"sse{uuid.uuid4().hex[:6]}"}}
    one, two = await hub_server(**shared), await hub_server(**shared)
    assert one.hub.node_id != two.hub.node_id
    watcher = await ws_client(two.ws, "watcher-2")
    await watcher.request("join", room="wide")
    stream = await sse(one, "/api/rooms/wide/events?client_id=feed-2")
    await stream.expect("joined")
    join = await watcher.wait_for("presence", event="join", client_id="feed-2")
    assert join["kind"] == "sse"
    # A message published on the other node reaches the SSE subscriber, with its offset.
    assert (await watcher.request("publish", room="wide", data="hello"))["offset"] == 1
    assert await stream.messages(1) == [(1, "hello")]


async def test_a_hub_shutdown_ends_every_stream_with_a_close_event(hub_server, sse):
    running = await hub_server()
    stream = await sse(running, "/api/rooms/bye/events")
    await stream.expect("joined")
    await running.hub.publish("bye", "last")
    stopping = asyncio.create_task(running.stop())
    rest = await stream.ended()
    await asyncio.wait_for(stopping, TIMEOUT * FACTOR)
    assert [e.event for e in rest] == ["message", "close"]
    close = orjson.loads(rest[-1].data)
    assert close["type"] == "close" and close["code"] == 1001


async def test_a_finished_job_whose_room_kept_nothing_ends_with_its_record(hub_server, sse):
    running = await hub_server(
        jobs={"modules": ["jobs_fixtures"]}, rooms=[{"pattern": "$job:*", "history_size": 0}]
    )
    job_id = await submit(running, "echo", value=42)
    async with httpx.AsyncClient(base_url=running.http) as http:
        while (await http.get(f"/api/jobs/{job_id}")).json()["state"] != "succeeded":
            await asyncio.sleep(0.01)
    stream = await sse(running, f"/api/jobs/{job_id}/events", headers=SSE)
    await stream.expect("joined")
    rest = await stream.ended()
    assert [e.event for e in rest] == ["gap", "job"]  # said, not replayed as if complete
    record = orjson.loads(rest[-1].data)
    assert record["type"] == "job" and record["state"] == "succeeded" and record["result"] == 42


async def test_a_stream_ends_at_its_token_expiry(hub_server, sse):
    running = await hub_server(auth=jwt_auth(expiry_warning=0.5, expiry_grace=0.2))
    # Room for a slow machine to connect before the token expires (a 401 otherwise).
    exp = time.time() + 3.0
    stream = await sse(running, f"/api/rooms/a/events?token={token('alice', exp=exp, rooms=['a'])}")
    await stream.expect("joined")
    _, warned = await stream.expect("token.expiring", timeout=5)
    assert warned["exp"] == pytest.approx(exp)
    rest = await stream.ended(timeout=5)
    assert [e.event for e in rest] == ["close"]
    assert orjson.loads(rest[0].data) == {"type": "close", "code": 4401, "reason": "token expired"}
    assert "alice" not in running.hub.node.clients
