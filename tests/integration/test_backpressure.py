"""Fan-out under pressure: slow consumers are cut loose, floods do not starve writers."""

from __future__ import annotations

import asyncio

import httpx
from websockets.exceptions import ConnectionClosed

from support import FACTOR, open_client

BIG = "x" * 16_384


async def test_a_client_that_stops_reading_is_closed_and_others_lose_nothing(hub_server, ws_client):
    running = await hub_server(
        limits={"queue_max_messages": 64, "queue_max_bytes": 512 * 1024, "close_timeout": 0.5}
    )
    healthy = await ws_client(running.ws, "healthy")
    await healthy.request("join", room="feed")
    # max_queue=1: the client library stops reading the socket after one
    # unread frame, so TCP backpressure reaches the hub.
    slow = await open_client(running.ws, "slow", max_queue=1)
    await slow.request("join", room="feed")
    await healthy.expect("presence", event="join", client_id="slow")
    publisher = await ws_client(running.ws, "publisher")
    await publisher.request("join", room="feed")
    await healthy.expect("presence", event="join", client_id="publisher")

    count = 1500
    received: list[int] = []
    leave_seen = asyncio.Event()

    async def read_healthy() -> None:
        while len(received) < count:
            frame = await healthy.recv(timeout=20)
            if frame["type"] == "message":
                received.append(frame["data"]["n"])
            elif frame["type"] == "presence" and frame["client_id"] == "slow":
                assert frame["event"] == "leave"
                leave_seen.set()

    reader = asyncio.create_task(read_healthy())
    for n in range(count):
        await publisher.send(type="publish", room="feed", data={"n": n, "pad": BIG})
        if n % 50 == 0:
            await publisher.request("ping")  # keep the publisher itself in step
    await asyncio.wait_for(reader, 30 * FACTOR)

    assert received == list(range(count))  # every message, in order
    assert leave_seen.is_set()
    assert running.hub.node.slow_consumers == 1
    assert "slow" not in running.hub.node.clients
    async with httpx.AsyncClient(base_url=running.http) as http:
        metrics = (await http.get("/metrics")).text
        clients = [c["id"] for c in (await http.get("/api/clients")).json()]
    assert "wirehub_slow_consumer_disconnects_total 1.0" in metrics
    assert "slow" not in clients
    # When the slow client finally reads, its stream ends: the hub closed it.
    ended = False
    try:
        while True:
            await asyncio.wait_for(slow.ws.recv(), 10 * FACTOR)
    except ConnectionClosed as exc:
        ended = True
        assert exc.rcvd is None or exc.rcvd.code == 4001
    assert ended
    await slow.ws.close()


async def test_a_burst_of_publishes_in_one_read_does_not_overflow_members(hub_server, ws_client):
    # Queues hold 100 frames; 2 000 publishes arrive back to back. If the reader
    # processed the whole burst before any writer ran, every member would
    # overflow and be dropped as a slow consumer.
    running = await hub_server(limits={"queue_max_messages": 100})
    members = [await ws_client(running.ws, f"m{i}") for i in range(3)]
    for member in members:
        await member.request("join", room="burst")
    flooder = await ws_client(running.ws, "flooder")
    await flooder.request("join", room="burst")
    frames = [f'{{"type":"publish","room":"burst","data":{n}}}' for n in range(2000)]
    await asyncio.gather(*(flooder.ws.send(frame) for frame in frames))

    async def collect(member) -> list[int]:
        got = []
        while len(got) < 2000:
            frame = await member.recv(timeout=20)
            if frame["type"] == "message":
                got.append(frame["data"])
        return got

    results = await asyncio.gather(*(collect(m) for m in members))
    assert all(r == list(range(2000)) for r in results)
    assert running.hub.node.slow_consumers == 0


async def test_a_reader_that_pauses_then_resumes_gets_every_message_in_order(hub_server, ws_client):
    # One publish per loop pass (each awaits its ack), so each message reaches
    # the slow member through the one-message write to the server's raw
    # writer. The message that meets the full socket is declined there and
    # must take the member's queue, not vanish: when it reads again it sees
    # every message, in order.
    running = await hub_server(
        limits={"queue_max_messages": 4096, "queue_max_bytes": 64 * 1024 * 1024}
    )
    slow = await open_client(running.ws, "slow", max_queue=1)
    await slow.request("join", room="feed")
    publisher = await ws_client(running.ws, "publisher")
    await publisher.request("join", room="feed")
    conn = running.hub.node.clients["slow"]
    sent = 0
    while conn.queued == 0 and sent < 3000:  # until the socket to it pushes back
        reply = await publisher.request("publish", room="feed", data={"n": sent, "pad": BIG})
        assert reply["type"] == "ack", reply
        publisher.buffer.clear()  # its own copies
        sent += 1
    pushed_back = conn.queued > 0
    for _ in range(20):  # and some more behind the queue
        await publisher.request("publish", room="feed", data={"n": sent, "pad": BIG})
        publisher.buffer.clear()
        sent += 1
    # Its pong comes after everything the hub accepted for it, in order.
    await slow.request("ping", timeout=30)
    received = [f["data"]["n"] for f in slow.buffer if f["type"] == "message"]
    assert received == list(range(sent))
    assert pushed_back, "the slow reader's socket never filled"
    assert running.hub.node.slow_consumers == 0
    await slow.ws.close()


def count_asgi_sends(conn):
    """Count the data frames that leave ``conn`` through the ASGI ``send``, not the raw writer."""
    transport = conn.transport
    original = transport._send
    counted: list[object] = []

    async def counting(message):
        if message["type"] == "websocket.send":
            counted.append(message)
        await original(message)

    transport._send = counting
    return counted


async def test_a_reader_that_drains_is_written_raw_again(hub_server, ws_client):
    # The frame-once raw writer is declined while the socket pushes back (the
    # queue and the ASGI send take over) and must be taken again once it has
    # drained: otherwise every later delivery pays the slow path for good.
    running = await hub_server(
        limits={"queue_max_messages": 4096, "queue_max_bytes": 64 * 1024 * 1024}
    )
    slow = await open_client(running.ws, "slow", max_queue=1)
    await slow.request("join", room="feed")
    publisher = await ws_client(running.ws, "publisher")
    await publisher.request("join", room="feed")
    conn = running.hub.node.clients["slow"]
    via_asgi = count_asgi_sends(conn)

    async def publish(n: int) -> None:
        reply = await publisher.request("publish", room="feed", data={"n": n, "pad": BIG})
        assert reply["type"] == "ack", reply
        publisher.buffer.clear()  # its own copies

    for n in range(20):  # a reader that keeps up: every frame raw
        await publish(n)
    await slow.request("ping", timeout=30)
    assert via_asgi == []
    sent = 20
    while conn.queued == 0 and sent < 3000:  # until its socket pushes back
        await publish(sent)
        sent += 1
    assert conn.queued > 0, "the slow reader's socket never filled"
    await slow.request("ping", timeout=30)  # it reads everything: the socket drains
    assert via_asgi, "the queued frames took the ASGI send"
    after_drain = len(via_asgi)
    for _ in range(20):
        await publish(sent)
        sent += 1
    await slow.request("ping", timeout=30)
    assert len(via_asgi) == after_drain  # raw again
    received = [f["data"]["n"] for f in slow.buffer if f["type"] == "message"]
    assert received == list(range(sent))
    await slow.ws.close()
