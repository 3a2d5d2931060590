"""wirehub.client against a real hub: acks, recovery after drops, heartbeats, errors."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from support import FACTOR, TIMEOUT
from wirehub.client import Disconnected, HubClient, JobFailed, SyncHubClient
from wirehub.core.protocol import CloseCode
from wirehub.errors import Forbidden, NotFound


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Awaitable[HubClient]]]:
    made: list[HubClient] = []

    async def factory(url: str, **kwargs: Any) -> HubClient:
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_cap", 0.5)
        kwargs.setdefault("request_timeout", TIMEOUT)
        client = await HubClient(url, **kwargs).connect()
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


class Recorder:
    """Collects frames of some kinds; ``await rec.until(pred)`` waits for one."""

    def __init__(self, client: HubClient, *kinds: str) -> None:
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        for kind in kinds:
            client.on(kind, self._add)

    def _add(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        self._changed.set()

    async def until(
        self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = TIMEOUT
    ) -> None:
        async with asyncio.timeout(timeout * FACTOR):
            while not pred(self.frames):
                self._changed.clear()
                await self._changed.wait()


def cut(client: HubClient) -> None:
    """Drop the client's TCP connection without a close handshake, as a network failure would."""
    assert client._ws is not None
    client._ws.transport.abort()


async def test_publish_resolves_with_the_ack_offset_and_peers_receive_it(hub, make_client):
    alice = await make_client(hub.ws, client_id="alice")
    bob = await make_client(hub.ws, client_id="bob")
    got = Recorder(bob, "message")
    await alice.join("lobby")
    joined = await bob.join("lobby")
    assert joined["members"] == ["alice", "bob"] and joined["offset"] == 0
    assert await alice.publish("lobby", {"text": "one"}) == 1
    assert await alice.publish("lobby", {"text": "two"}) == 2
    await got.until(lambda f: len(f) == 2)
    assert [(m["from"], m["data"]["text"], m["offset"]) for m in got.frames] == [
        ("alice", "one", 1),
        ("alice", "two", 2),
    ]
    assert bob.rooms == {"lobby": 2} and alice.rooms == {"lobby": 2}


async def test_direct_presence_and_the_messages_iterator(hub, make_client):
    alice = await make_client(hub.ws, client_id="alice")
    bob = await make_client(hub.ws, client_id="bob")
    await alice.join("room-a")
    await bob.join("room-a")
    presence = await alice.presence("room-a")
    assert presence["members"] == ["alice", "bob"] and presence["member_count"] == 2

    stream = bob.messages(kinds=("direct",))
    nxt = asyncio.ensure_future(anext(stream))
    await alice.direct("bob", {"psst": 1})
    frame = await asyncio.wait_for(nxt, TIMEOUT)
    assert frame == {"type": "direct", "from": "alice", "data": {"psst": 1}}
    await stream.aclose()
    assert await alice.ping() < TIMEOUT


async def test_errors_raise_precise_exceptions_and_the_client_goes_on(hub, make_client):
    alice = await make_client(hub.ws, client_id="alice")
    with pytest.raises(Forbidden, match=r"room '\$hub.stats' is a system room"):
        await alice.publish("$hub.stats", 1)
    with pytest.raises(Forbidden, match="join room 'nowhere' before publishing"):
        await alice.publish("nowhere", 1)
    with pytest.raises(NotFound, match="client 'ghost' is not connected") as info:
        await alice.direct("ghost", 1)
    assert info.value.code == "not_found" and info.value.fields["to"] == "ghost"
    await alice.join("ok")
    assert await alice.publish("ok", "still fine") == 1


async def test_reconnects_with_the_same_id_and_recovers_missed_messages(hub, make_client):
    bob = await make_client(hub.ws)  # id chosen by the hub, reused on reconnect
    got = Recorder(bob, "message", "disconnect", "reconnect", "joined")
    await bob.join("feed")
    await hub.hub.publish("feed", "before")
    await got.until(lambda f: any(x.get("data") == "before" for x in f))
    client_id = bob.client_id

    cut(bob)
    await got.until(lambda f: any(x["type"] == "disconnect" for x in f))
    # The client is down: these land in the room's history only.
    for i in range(3):
        await hub.hub.publish("feed", f"missed-{i}")
    await got.until(lambda f: any(x["type"] == "reconnect" for x in f))
    await hub.hub.publish("feed", "after")
    await got.until(lambda f: any(x.get("data") == "after" for x in f))

    joined = [f for f in got.frames if f["type"] == "joined"]
    assert joined[-1]["recovered"] is True and joined[-1]["first_offset"] == 1
    data = [(f["data"], f.get("replay")) for f in got.frames if f["type"] == "message"]
    assert data == [  # no gaps, no duplicates, the recovered ones marked
        ("before", None),
        ("missed-0", "missed"),
        ("missed-1", "missed"),
        ("missed-2", "missed"),
        ("after", None),
    ]
    assert bob.client_id == client_id and bob.reconnects == 1
    assert hub.hub.node.clients[client_id].rooms == {"feed"}


async def test_recovered_is_false_when_history_lost_messages(hub_server, make_client):
    running = await hub_server(stats_interval=0, history={"size": 2})
    bob = await make_client(running.ws, client_id="bob")
    got = Recorder(bob, "message", "disconnect", "joined")
    await bob.join("feed")
    cut(bob)
    await got.until(lambda f: any(x["type"] == "disconnect" for x in f))
    for i in range(5):
        await running.hub.publish("feed", i)
    await got.until(lambda f: len([x for x in f if x["type"] == "message"]) == 2)
    joined = [f for f in got.frames if f["type"] == "joined"][-1]
    assert joined["recovered"] is False and joined["first_offset"] == 4
    assert [f["data"] for f in got.frames if f["type"] == "message"] == [3, 4]


async def test_a_publish_during_a_drop_waits_for_the_reconnect(hub, make_client):
    alice = await make_client(hub.ws, client_id="alice")
    watcher = await make_client(hub.ws, client_id="watcher")
    got = Recorder(watcher, "message")
    seen = Recorder(alice, "disconnect")
    await alice.join("lobby")
    await watcher.join("lobby")
    cut(alice)
    await seen.until(lambda f: bool(f))
    assert not alice.connected
    offset = await alice.publish("lobby", "sent while down")  # sent once re-joined
    assert offset == 1
    await got.until(lambda f: bool(f))
    assert got.frames[0]["data"] == "sent while down"


async def test_a_kicked_client_does_not_reconnect(hub, make_client):
    alice = await make_client(hub.ws, client_id="alice")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        assert (await http.delete("/api/clients/alice")).status_code == 204
    await asyncio.wait_for(alice.wait_closed(), TIMEOUT)
    assert alice.close_code == CloseCode.KICKED
    assert "alice" not in hub.hub.node.clients
    with pytest.raises(Disconnected):
        await alice.publish("lobby", 1)


async def test_the_client_answers_heartbeats_and_stays_connected(hub_server, make_client):
    running = await hub_server(stats_interval=0, heartbeat={"interval": 0.1, "timeout": 0.3})
    alice = await make_client(running.ws, client_id="alice")
    lost = Recorder(alice, "disconnect")
    conn = running.hub.node.clients["alice"]
    # Several ping rounds, each one longer than the timeout: a client that did
    # not answer would have been closed with 4002 after the first.
    async with asyncio.timeout(TIMEOUT * FACTOR):
        while alice.pings_answered < 4:
            await asyncio.sleep(0.05)
    assert running.hub.node.clients.get("alice") is conn and not lost.frames


async def test_the_sync_facade_for_scripts(hub, make_client):
    listener = await make_client(hub.ws, client_id="listener")
    got = Recorder(listener, "message")
    await listener.join("jobs")

    def script() -> tuple[int, dict[str, Any]]:
        with SyncHubClient(hub.ws, client_id="script") as sync:
            sync.join("jobs")
            offset = sync.publish("jobs", {"n": 1})
            sync.direct("listener", "hello")
            return offset, {"presence": sync.presence("jobs")}

    offset, extra = await asyncio.to_thread(script)
    assert offset == 1
    assert extra["presence"]["members"] == ["listener", "script"]
    await got.until(lambda f: bool(f))
    assert got.frames[0]["data"] == {"n": 1} and got.frames[0]["from"] == "script"


async def test_sync_recv_gets_messages(hub, make_client):
    pub = await make_client(hub.ws, client_id="pub")
    await pub.join("news")
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    def script() -> dict[str, Any]:
        with SyncHubClient(hub.ws, client_id="reader") as sync:
            sync.join("news")
            loop.call_soon_threadsafe(ready.set)
            return sync.recv(timeout=TIMEOUT)

    task = asyncio.ensure_future(asyncio.to_thread(script))
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    await pub.publish("news", "extra")
    frame = await asyncio.wait_for(task, TIMEOUT)
    assert frame["data"] == "extra" and frame["room"] == "news"


JOBS = {"modules": ["jobs_fixtures"], "concurrency": 2}


async def test_submit_reports_progress_and_outputs_then_the_result(hub_server, make_client):
    running = await hub_server(stats_interval=0, jobs=JOBS)
    alice = await make_client(running.ws, client_id="alice")
    progress: list[tuple[float, str | None]] = []
    outputs: list[Any] = []
    handle = await alice.submit(
        "count",
        {"n": 4},
        on_progress=lambda p, m: progress.append((p, m)),
        on_output=outputs.append,
    )
    assert await handle.result(TIMEOUT) == 10
    assert outputs == [{"i": 1}, {"i": 2}, {"i": 3}, {"i": 4}]
    assert progress[-1] == (1.0, "step 4 of 4") and handle.state == "succeeded"
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)


async def test_a_failing_job_raises_job_failed_and_unknown_jobs_not_found(hub_server, make_client):
    running = await hub_server(stats_interval=0, jobs=JOBS)
    alice = await make_client(running.ws, client_id="alice")
    handle = await alice.submit("boom", {"message": "sensor on fire"})
    with pytest.raises(JobFailed, match="ValueError: sensor on fire") as info:
        await handle.result(TIMEOUT)
    assert info.value.fields["state"] == "failed" and handle.state == "failed"
    with pytest.raises(NotFound, match="nope"):
        await alice.submit("nope")
    assert await alice.run_job("echo", {"value": [1, 2]}) == [1, 2]


async def test_upload_in_chunks_with_progress_then_the_job_on_it(hub_server, make_client, tmp_path):
    running = await hub_server(
        stats_interval=0, jobs=JOBS, uploads={"dir": str(tmp_path / "spool"), "chunk_size": 4096}
    )
    alice = await make_client(running.ws, client_id="alice")
    payload = bytes(range(256)) * 100  # 25,600 bytes: 7 chunks of 4 KiB
    source = tmp_path / "readings.bin"
    source.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    done = await alice.upload(
        source, job="digest_upload", on_progress=lambda a, t: seen.append((a, t))
    )
    assert done["type"] == "upload.complete" and done["size"] == len(payload)
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert len(seen) == 8
    result = await alice.follow(done["job_id"]).result(TIMEOUT)
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_an_upload_resumes_after_a_drop(hub_server, make_client, tmp_path):
    running = await hub_server(
        stats_interval=0, jobs=JOBS, uploads={"dir": str(tmp_path / "spool"), "chunk_size": 4096}
    )
    alice = await make_client(running.ws, client_id="alice", upload_window=1)
    payload = b"x" * 40_000
    dropped: list[int] = []

    def progress(acked: int, total: int) -> None:
        if acked >= 12_288 and not dropped:
            dropped.append(acked)
            cut(alice)

    done = await alice.upload(payload, name="big.bin", on_progress=progress)
    assert done["size"] == len(payload) and done["sha256"] == hashlib.sha256(payload).hexdigest()
    assert dropped and alice.reconnects == 1
