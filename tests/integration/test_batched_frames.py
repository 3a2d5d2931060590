"""Batched frames (docs/protocol.md, "Batched frames"): the clients, the CLI and the hub.

Two halves. The clients' half runs against :class:`batch_support.BatchingPeer`, a tiny
real WebSocket server that sends LF-separated batches, so what the clients do with a
batch is checked on its own: they ask with ``batch=1``, split each text frame, and hand
every message to user code once, in order (a bad piece is dropped, the rest delivered).
The hub's half runs against a real hub: a burst of 200 publishes reaches a ``batch=1``
subscriber in order, exactly once, in fewer frames than messages, while a subscriber
that did not ask gets one message per frame; frames are counted on raw connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect

from batch_support import BatchingPeer, message
from support import FACTOR, TIMEOUT, collector_off, outbounds_in_cycles
from wirehub.client import HubClient, SyncHubClient
from wirehub.core.outbound import Outbound

BURST = 200
#: The hub's default ``limits.batch_max_messages``.
BATCH_MAX = 16


def asked_batch(path: str) -> bool:
    return parse_qs(urlsplit(path).query).get("batch") == ["1"]


async def collect(client: HubClient, room: str, count: int) -> list[dict[str, Any]]:
    """Join ``room`` and return its first ``count`` messages (subscribed before the join)."""
    async with client.messages(room) as stream:
        await client.join(room)
        async with asyncio.timeout(TIMEOUT * FACTOR):
            return [await anext(stream) for _ in range(count)]


# -- the clients, against a peer that batches -----------------------------------------------


async def test_hub_client_with_batch_asks_for_it_and_dispatches_every_message_of_a_frame():
    async with (
        BatchingPeer(messages=40, per_frame=16) as peer,
        HubClient(peer.url, client_id="b1", batch=True, reconnect=False) as client,
    ):
        assert client.welcome["batch"] is True
        got = await collect(client, "feed", 40)
        assert await client.ping() >= 0  # requests still matched by ref afterwards
    assert [asked_batch(p) for p in peer.paths] == [True]
    assert parse_qs(urlsplit(peer.paths[0]).query)["client_id"] == ["b1"]
    # joined + 40 messages in frames of 16: the reply shared a frame with messages.
    assert peer.frames == [16, 16, 9]
    assert [m["offset"] for m in got] == list(range(1, 41))
    assert [m["data"] for m in got] == [{"i": i} for i in range(1, 41)]


async def test_hub_client_without_batch_does_not_ask_and_gets_one_message_per_frame():
    async with BatchingPeer(messages=10) as peer, HubClient(peer.url, reconnect=False) as client:
        assert "batch" not in client.welcome
        got = await collect(client, "feed", 10)
    assert [asked_batch(p) for p in peer.paths] == [False]
    assert peer.frames == [1] * 11
    assert [m["offset"] for m in got] == list(range(1, 11))


async def test_a_bad_piece_of_a_batch_is_dropped_and_the_connection_goes_on(caplog):
    good = [orjson.dumps(message("feed", offset)).decode() for offset in (3, 4)]
    extra = [f"{good[0]}\nnot json\n[1, 2]\n{good[1]}"]
    async with (
        BatchingPeer(messages=2, extra=extra) as peer,
        HubClient(peer.url, batch=True, reconnect=False) as client,
    ):
        got = await collect(client, "feed", 4)
        assert await client.ping() >= 0
        assert client.connected
    assert [m["offset"] for m in got] == [1, 2, 3, 4]
    dropped = [r.getMessage() for r in caplog.records if "dropped message" in r.getMessage()]
    assert len(dropped) == 2 and dropped[0].startswith("dropped message 2 of a text frame")


async def test_sync_client_passes_batch_through():
    async with BatchingPeer(messages=20) as peer:

        def run() -> list[int]:
            with SyncHubClient(peer.url, batch=True, reconnect=False) as hub:
                assert hub.client.welcome["batch"] is True
                hub.join("feed")
                return [hub.recv(timeout=TIMEOUT)["offset"] for _ in range(20)]

        offsets = await asyncio.to_thread(run)
    assert offsets == list(range(1, 21))
    assert [asked_batch(p) for p in peer.paths] == [True]
    assert max(peer.frames) == 16


async def test_tail_with_batch_asks_for_it_and_prints_one_line_per_message():
    async with BatchingPeer(messages=40) as peer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wirehub",
            "tail",
            "feed",
            "--batch",
            "--no-reconnect",
            "--url",
            peer.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(3 * TIMEOUT):
                lines = [orjson.loads(await proc.stdout.readline()) for _ in range(40)]
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
    assert [m["offset"] for m in lines] == list(range(1, 41))
    assert [asked_batch(p) for p in peer.paths] == [True]
    assert max(peer.frames) == 16


# -- the hub ------------------------------------------------------------------------------


async def raw_subscriber(url: str, client_id: str, room: str, *, batch: bool) -> ClientConnection:
    """A bare ``websockets`` connection joined to ``room``: frames are counted as they come."""
    query = f"?client_id={client_id}" + ("&batch=1" if batch else "")
    ws = await connect(url + query, open_timeout=TIMEOUT, max_queue=None, max_size=2**24)
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    assert welcome.get("batch", False) is batch, welcome
    await ws.send(orjson.dumps({"type": "join", "room": room, "ref": "j"}).decode())
    async with asyncio.timeout(TIMEOUT * FACTOR):
        while True:
            raw = await ws.recv()
            assert isinstance(raw, str)
            if any(orjson.loads(piece).get("ref") == "j" for piece in raw.split("\n")):
                return ws


async def read_messages(ws: ClientConnection, count: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The first ``count`` room messages, and how many messages each frame carried."""
    messages: list[dict[str, Any]] = []
    per_frame: list[int] = []
    async with asyncio.timeout(TIMEOUT * FACTOR):
        while len(messages) < count:
            raw = await ws.recv()
            assert isinstance(raw, str), "a binary frame in a room"
            assert not raw.endswith("\n") and "\n\n" not in raw, repr(raw[-80:])
            pieces = [orjson.loads(piece) for piece in raw.split("\n")]
            per_frame.append(len(pieces))
            messages.extend(p for p in pieces if p.get("type") == "message")
    return messages, per_frame


async def test_a_burst_reaches_a_batch_subscriber_in_fewer_frames_and_a_plain_one_frame_each(
    hub,
):
    batched = await raw_subscriber(hub.ws, "batched", "burst", batch=True)
    plain = await raw_subscriber(hub.ws, "plain", "burst", batch=False)
    try:
        for i in range(BURST):  # one loop pass: nothing here waits
            await hub.hub.publish("burst", {"i": i, "text": "line\nbreak"})
        (got, frames), (plain_got, plain_frames) = await asyncio.gather(
            read_messages(batched, BURST), read_messages(plain, BURST)
        )
    finally:
        await batched.close()
        await plain.close()
    # In order and exactly once, LFs inside strings intact, on both connections.
    for messages in (got, plain_got):
        assert [m["data"]["i"] for m in messages] == list(range(BURST))
        assert [m["offset"] for m in messages] == list(range(1, BURST + 1))
        assert {m["data"]["text"] for m in messages} == {"line\nbreak"}
    assert max(frames) > 1, frames  # the batch connection did get batches ...
    assert max(frames) <= BATCH_MAX and len(frames) < BURST
    assert set(plain_frames) == {1}  # ... and the other one did not


async def test_hub_client_with_batch_gets_a_whole_burst_from_a_real_hub(hub):
    async with HubClient(hub.ws, client_id="sdk", batch=True, reconnect=False) as client:
        assert client.welcome.get("batch") is True
        async with client.messages("burst") as stream:
            await client.join("burst")
            for i in range(BURST):
                await hub.hub.publish("burst", {"i": i})
            async with asyncio.timeout(TIMEOUT * FACTOR):
                got = [await anext(stream) for _ in range(BURST)]
        assert [m["data"]["i"] for m in got] == list(range(BURST))
        assert await client.publish("burst", "after") == BURST + 1  # requests still work


async def test_a_batched_burst_leaves_nothing_for_the_garbage_collector(hub_server):
    # The batches a pass builds are cached for the other members of the room;
    # the cache must not keep the messages (and their payloads) in a cycle
    # once everyone is written. No history, so that nothing else keeps them.
    hub = await hub_server(history={"size": 0})
    batched = await raw_subscriber(hub.ws, "batched", "burst", batch=True)
    plain = await raw_subscriber(hub.ws, "plain", "burst", batch=False)
    try:
        with collector_off():
            for i in range(BURST):  # one loop pass: nothing here waits
                await hub.hub.publish("burst", {"i": i, "text": "x" * 500})
            (got, frames), (plain_got, _) = await asyncio.gather(
                read_messages(batched, BURST), read_messages(plain, BURST)
            )
            assert len(got) == len(plain_got) == BURST and max(frames) > 1
            held = outbounds_in_cycles()
        assert held == []
        # And the room, now quiet, keeps none of its last pass.
        gc.collect()
        kept = [
            o
            for o in gc.get_objects()
            if isinstance(o, Outbound) and isinstance(o.text, str) and "x" * 500 in o.text
        ]
        assert kept == []
    finally:
        await batched.close()
        await plain.close()
