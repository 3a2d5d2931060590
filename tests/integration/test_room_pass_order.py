"""Over real sockets, a burst interleaved over two rooms reaches each member in publish order.

Under ``wirehub serve``'s protocols a room corks a pass's messages once for
all its members (core/coalesce.py ``RoomPass``); a member of both rooms must
leave one room's shared list whenever the other room's message comes in
between. The burst is sent without waiting for acks, so the hub reads it in a
few passes and every such switch happens inside a pass.
"""

from __future__ import annotations

import asyncio

from support import FACTOR, TIMEOUT, collector_off, outbounds_in_cycles

BURST = 300


async def messages(client, count: int) -> list[tuple[str, int]]:
    got: list[tuple[str, int]] = []
    async with asyncio.timeout(TIMEOUT * FACTOR):
        while len(got) < count:
            frame = await client.recv(TIMEOUT)
            if frame["type"] == "message":
                got.append((frame["room"], frame["data"]))
    return got


async def test_a_member_of_two_rooms_gets_their_interleaved_burst_in_publish_order(hub, ws_client):
    both = await ws_client(hub.ws, "both")
    only_a = await ws_client(hub.ws, "only-a")
    publisher = await ws_client(hub.ws, "publisher")
    for client, rooms in ((both, "ab"), (only_a, "a"), (publisher, "ab")):
        for room in rooms:
            await client.request("join", room=room)
    # Irregular runs, so that each switch falls at another place of a pass.
    order = [("a" if (i * 7) % 5 < 3 else "b", i) for i in range(BURST)]
    for ref, (room, data) in enumerate(order):
        await publisher.send(type="publish", room=room, data=data, ref=ref)
    acks = []
    async with asyncio.timeout(TIMEOUT * FACTOR):
        while len(acks) < BURST:
            frame = await publisher.recv(TIMEOUT)
            if frame["type"] == "ack":
                acks.append(frame["ref"])
    assert acks == list(range(BURST))
    assert await messages(both, BURST) == order
    in_a = [pair for pair in order if pair[0] == "a"]
    assert await messages(only_a, len(in_a)) == in_a
    # Nothing more was queued for either (no duplicate from a sealed pass):
    # the next frame after a ping is its pong.
    for client in (both, only_a):
        await client.send(type="ping")
        assert (await client.recv(TIMEOUT))["type"] == "pong"


async def test_a_burst_leaves_nothing_for_the_garbage_collector(hub_server, ws_client):
    # Every message of a pass is written to every member and then dropped by
    # reference counting: none waits, with its payload, for a collection. No
    # history, so that nothing else keeps them.
    hub = await hub_server(history={"size": 0})
    subscribers = [await ws_client(hub.ws, f"sub-{i}") for i in range(3)]
    publisher = await ws_client(hub.ws, "publisher")
    for client in (*subscribers, publisher):
        await client.request("join", room="a")
    with collector_off():
        for ref in range(BURST):
            await publisher.send(type="publish", room="a", data="x" * 1000, ref=ref)
        for client in subscribers:
            assert len(await messages(client, BURST)) == BURST
        # One room's burst read in a few passes: several messages per pass.
        assert hub.hub.node.coalescer.flushes < BURST
        assert outbounds_in_cycles() == []
