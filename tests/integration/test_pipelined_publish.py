"""Over Redis, a burst of publishes from one client shares round trips and keeps its order."""

from __future__ import annotations

import uuid

import orjson
import redis.asyncio as aioredis

from support import TIMEOUT
from wirehub.brokers.redis import wire


async def alice_and_bob(hub_server, ws_client, redis_url, rooms):
    """A hub over Redis (a prefix of its own) and two clients in every one of ``rooms``."""
    running = await hub_server(redis={"url": redis_url, "prefix": f"p{uuid.uuid4().hex[:6]}"})
    alice = await ws_client(running.ws, "alice")
    bob = await ws_client(running.ws, "bob")
    for client in (alice, bob):
        for room in rooms:
            await client.request("join", room=room)
    return running, alice, bob


async def test_a_burst_over_redis_is_pipelined_and_keeps_offsets_acks_and_deliveries_in_order(
    hub_server, ws_client, redis_url
):
    running, alice, bob = await alice_and_bob(hub_server, ws_client, redis_url, ["burst"])
    batcher = running.hub.node.broker._publish  # type: ignore[attr-defined]
    pipelines_before = batcher.batches
    count = 200
    # Sent without waiting for acks: the hub reads them in a few reads, not one by one.
    for i in range(count):
        await alice.send(type="publish", room="burst", data=i, ref=i)
    acks = []
    while len(acks) < count:
        frame = await alice.recv(TIMEOUT)
        if frame["type"] == "ack":
            acks.append(frame)
        else:
            assert frame["type"] in ("message", "presence"), frame
    assert [a["ref"] for a in acks] == list(range(count))  # acks in the frames' order
    offsets = [a["offset"] for a in acks]
    assert offsets == list(range(offsets[0], offsets[0] + count))  # offsets in that order too
    got = []
    while len(got) < count:
        frame = await bob.wait_for("message", room="burst")
        got.append((frame["offset"], frame["data"]))
    assert got == list(zip(offsets, range(count), strict=True))  # delivered once, in order
    pipelines = batcher.batches - pipelines_before
    assert pipelines < count // 4, f"{count} publishes took {pipelines} round trips"
    # The connection goes on: a ping overtakes nothing it should not.
    assert (await alice.request("ping"))["type"] == "pong"


async def test_a_burst_reaches_other_nodes_as_one_pubsub_message_per_batch_with_every_record(
    hub_server, ws_client, redis_url
):
    running = await hub_server(redis={"url": redis_url, "prefix": f"p{uuid.uuid4().hex[:6]}"})
    alice = await ws_client(running.ws, "alice")
    await alice.request("join", room="burst")
    broker = running.hub.node.broker  # type: ignore[attr-defined]
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    try:
        await pubsub.subscribe(broker.keys.room_channel("burst"))
        assert (await pubsub.get_message(timeout=TIMEOUT))["type"] == "subscribe"
        count = 200
        for i in range(count):
            await alice.send(type="publish", room="burst", data=i, ref=i)
        records: list[tuple[str | None, int, str]] = []
        lines = 0
        while len(records) < count:
            message = await pubsub.get_message(timeout=TIMEOUT)
            assert message is not None, f"{len(records)} of {count} records seen"
            got = wire.decode(message["data"])
            assert (got.kind, got.node) == ("Z", broker.node_id)
            records += wire.records(got.body)
            lines += 1
        offsets = [offset for _, offset, _ in records]
        assert offsets == list(range(offsets[0], offsets[0] + count))
        assert [orjson.loads(frame)["data"] for *_, frame in records] == list(range(count))
        assert all(orjson.loads(frame)["offset"] == off for _, off, frame in records)
        assert lines < count // 4, f"{count} publishes took {lines} pub/sub messages"
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_a_burst_over_two_rooms_keeps_each_rooms_offsets_keys_and_echoes(
    hub_server, ws_client, redis_url
):
    # One script call carries the burst in groups of neighbouring publishes to one
    # room: every group boundary, an echo and a repeated key must land where sent.
    _, alice, bob = await alice_and_bob(hub_server, ws_client, redis_url, ["r1", "r2"])
    rooms = ["r1", "r1", "r2", "r1", "r2", "r2", "r2", "r1"] * 10
    sends = []
    for i, room in enumerate(rooms):
        frame = {"type": "publish", "room": room, "data": i, "ref": i, "echo": i % 3 == 0}
        if i in (8, 10, 16):  # the same key: r1, r2, r1 (the last one a repeat in r1)
            frame["idempotency_key"] = "k"
        sends.append(frame)
    for frame in sends:
        await alice.send(**frame)
    acks = {}
    echoed = []
    while len(acks) < len(sends):
        frame = await alice.recv(TIMEOUT)
        if frame["type"] == "ack":
            acks[frame["ref"]] = frame["offset"]
        elif frame["type"] == "message":
            echoed.append(frame["data"])
    assert rooms[8] == rooms[16] == "r1" and rooms[10] == "r2"
    assert acks[16] == acks[8]  # the repeat in r1 answered the first publish's offset
    for room in ("r1", "r2"):
        refs = [i for i, r in enumerate(rooms) if r == room and i != 16]
        assert [acks[i] for i in refs] == list(range(acks[refs[0]], acks[refs[0]] + len(refs)))
    delivered = {"r1": [], "r2": []}
    while sum(len(v) for v in delivered.values()) < len(sends) - 1:
        frame = await bob.wait_for("message")
        delivered[frame["room"]].append((frame["offset"], frame["data"]))
    for room in ("r1", "r2"):
        refs = [i for i, r in enumerate(rooms) if r == room and i != 16]
        assert delivered[room] == [(acks[i], i) for i in refs]
    while len(echoed) < len([i for i in range(len(sends)) if i % 3 == 0 and i != 16]):
        echoed.append((await alice.wait_for("message"))["data"])
    assert sorted(echoed) == [i for i in range(len(sends)) if i % 3 == 0 and i != 16]
