"""Over Redis, a burst of publishes from one client shares round trips and keeps its order."""

from __future__ import annotations

import uuid

import orjson
import redis.asyncio as aioredis

from support import TIMEOUT
from wirehub.brokers.redis import wire


async def test_a_burst_over_redis_is_pipelined_and_keeps_offsets_acks_and_deliveries_in_order(
    hub_server, ws_client, redis_url
):
    running = await hub_server(redis={"url": redis_url, "prefix": f"p{uuid.uuid4().hex[:6]}"})
    alice = await ws_client(running.ws, "alice")
    bob = await ws_client(running.ws, "bob")
    for client in (alice, bob):
        await client.request("join", room="burst")
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
