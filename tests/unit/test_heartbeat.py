"""The heartbeat without sockets: a silent peer is pinged, then closed with 4002; work per
tick follows the connections due, not the table.

Most tests drive :meth:`Heartbeat.tick` with a clock of their own (``last_seen`` set to
match); the last ones run the real loop on short real intervals against a real Node.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson
import pytest

from memory_transport import MemoryTransport
from support import TIMEOUT
from wirehub.core.connection import Connection
from wirehub.core.heartbeat import PING_FRAME, Heartbeat
from wirehub.core.node import Node
from wirehub.core.protocol import CloseCode


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def node():
    node = Node()
    yield node
    conns = list(node.clients.values())
    for conn in conns:
        node.disconnect(conn)
    await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in conns)), TIMEOUT)


def peer(node: Node, client_id: str, *, last_seen: float, kind: str = "ws") -> Connection:
    conn = Connection(client_id, MemoryTransport(kind))
    node.connect(conn)
    conn.last_seen = last_seen
    return conn


def sent_to(conn: Connection) -> MemoryTransport:
    transport: Any = conn.transport
    return transport


def pings(conn: Connection) -> int:
    """Pings written to ``conn`` so far, queued ones included."""
    return sent_to(conn).sent.count(PING_FRAME) + [f.text for f in (conn._queue or ())].count(
        PING_FRAME
    )


def heartbeat(node: Node, clock: Clock, **bounds: float) -> Heartbeat:
    bounds = {"interval": 10.0, "timeout": 5.0, "resolution": 1.0, **bounds}
    return Heartbeat(node.disconnect, clock=clock, **bounds)


async def test_a_silent_peer_is_pinged_after_interval_then_closed_after_timeout(node):
    clock = Clock()
    alice = peer(node, "alice", last_seen=clock.now)
    hb = heartbeat(node, clock)
    hb.start(node.clients.values())
    hb.tick(clock.now + 10.0)  # exactly `interval` of silence: not yet
    assert pings(alice) == 0
    hb.tick(clock.now + 11.0)
    assert pings(alice) == 1 and alice.ping_sent == clock.now + 11.0
    hb.tick(clock.now + 16.0)  # exactly `timeout` after the ping: still open
    assert alice.open and pings(alice) == 1
    hb.tick(clock.now + 17.0)
    assert not alice.open and "alice" not in node.clients
    await alice.wait_closed()
    assert sent_to(alice).closed == (CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
    assert (hb.pings, hb.timeouts) == (1, 1)


async def test_a_peer_that_answers_stays_and_waits_a_full_interval_for_the_next_ping(node):
    clock = Clock()
    alice = peer(node, "alice", last_seen=clock.now)
    hb = heartbeat(node, clock)
    hb.start(node.clients.values())
    hb.tick(clock.now + 11.0)
    assert pings(alice) == 1
    # Any frame answers: the node stamps last_seen and clears ping_sent.
    alice.last_seen, alice.ping_sent = clock.now + 12.0, None
    for t in range(13, 23):  # up to 10 s after the answer: silent, but not for long enough
        hb.tick(clock.now + t)
    assert alice.open and pings(alice) == 1
    hb.tick(clock.now + 23.0)
    assert pings(alice) == 2


async def test_a_timeout_longer_than_the_interval_does_not_delay_the_next_ping(node):
    clock = Clock()
    alice = peer(node, "alice", last_seen=clock.now)
    hb = heartbeat(node, clock, interval=5.0, timeout=20.0)
    hb.start(node.clients.values())
    hb.tick(clock.now + 6.0)
    assert pings(alice) == 1
    alice.last_seen, alice.ping_sent = clock.now + 7.0, None  # answered at once
    hb.tick(clock.now + 12.0)
    assert pings(alice) == 1  # 5 s after the answer: not yet
    hb.tick(clock.now + 13.0)
    assert pings(alice) == 2 and alice.open  # not 20 s after the first ping


@pytest.mark.parametrize(("interval", "timeout"), [(2.0, 1.0), (1.0, 1.0), (1.0, 3.0)])
async def test_pings_and_closes_fall_on_the_same_ticks_as_a_scan_of_every_client(
    node, interval, timeout
):
    """The wheel against the obvious scan (what the hub did before it), on random traffic.

    Clients send a frame at random moments (some answer pings, some go quiet); on every
    tick the scan looks at every client. The wheel must ping and close exactly the
    clients the scan does, at the same ticks.
    """
    rng = random.Random(f"{interval}/{timeout}")
    res, start = 0.25, 1000.0
    clock = Clock(start)
    conns = [peer(node, f"c{i}", last_seen=start) for i in range(40)]
    model = {c.id: {"last_seen": start, "ping_sent": None, "open": True} for c in conns}
    hb = heartbeat(node, clock, interval=interval, timeout=timeout, resolution=res)
    hb.start(node.clients.values())
    talkative = {c.id: rng.choice([0.0, 0.05, 0.2, 0.6]) for c in conns}
    for step in range(1, 121):
        now = start + step * res
        for conn in conns:  # frames that arrived since the last tick
            state = model[conn.id]
            if state["open"] and rng.random() < talkative[conn.id]:
                seen = now - rng.choice([0.0, 0.0625, 0.125])
                state["last_seen"], state["ping_sent"] = seen, None
                conn.last_seen, conn.ping_sent = seen, None
        expected_pings, expected_closes = set(), set()
        for cid, state in model.items():  # the scan
            if not state["open"]:
                continue
            if state["ping_sent"] is not None:
                if now - state["ping_sent"] > timeout:
                    state["open"] = False
                    expected_closes.add(cid)
            elif now - state["last_seen"] > interval:
                state["ping_sent"] = now
                expected_pings.add(cid)
        before = {c.id: (pings(c), c.open) for c in conns}
        hb.tick(now)
        got_pings = {c.id for c in conns if pings(c) > before[c.id][0]}
        got_closes = {c.id for c in conns if before[c.id][1] and not c.open}
        assert (got_pings, got_closes) == (expected_pings, expected_closes), now
    assert any(not s["open"] for s in model.values()) and any(s["open"] for s in model.values())


async def test_a_peer_that_keeps_talking_is_never_pinged(node):
    clock = Clock()
    alice = peer(node, "alice", last_seen=clock.now)
    hb = heartbeat(node, clock)
    hb.start(node.clients.values())
    for t in range(1, 100):
        alice.last_seen = clock.now + t  # a frame every second
        hb.tick(clock.now + t + 0.5)
    assert pings(alice) == 0 and alice.open


async def test_work_per_tick_follows_the_connections_due_not_the_table(node):
    clock = Clock()
    # 2048 peers last heard from over 2 s, 1/1024 s apart: each 1/8 s tick has 128 due.
    # (Binary fractions keep the clock arithmetic exact.)
    conns = [peer(node, f"p{i}", last_seen=clock.now + i / 1024) for i in range(2048)]
    hb = heartbeat(node, clock, interval=10.0, timeout=5.0, resolution=0.125)
    hb.start(node.clients.values())
    assert len(hb) == 2048
    assert hb.tick(clock.now + 10.0) == 0  # nobody silent for more than 10 s: nobody looked at
    checked = [hb.tick(clock.now + 10.0 + step / 8) for step in range(1, 18)]
    assert checked == [128] * 16 + [0], checked
    assert all(pings(c) == 1 for c in conns)


async def test_closed_peers_are_dropped_and_tcp_peers_never_watched(node):
    clock = Clock()
    alice = peer(node, "alice", last_seen=clock.now)
    bob = peer(node, "bob", last_seen=clock.now)
    device = peer(node, "tcp:dev", last_seen=clock.now, kind="tcp")
    hb = heartbeat(node, clock)
    hb.start(node.clients.values())
    assert len(hb) == 2  # alice and bob, not the TCP device
    node.disconnect(bob)
    hb.tick(clock.now + 11.0)
    assert len(hb) == 1 and pings(alice) == 1 and pings(bob) == 0 and pings(device) == 0
    hb.stop()
    assert len(hb) == 0
    hb.watch(peer(node, "late", last_seen=clock.now))  # stopped: not watched
    assert len(hb) == 0


def test_bounds_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(lambda *a: None, interval=0, timeout=5)
    assert Heartbeat(lambda *a: None, interval=20, timeout=20).resolution == 1.0
    assert Heartbeat(lambda *a: None, interval=0.1, timeout=0.3).resolution == 0.05


# -- the real loop on short intervals ---------------------------------------------------


async def test_run_pings_closes_the_silent_peer_and_spares_the_one_that_answers(node):
    hb = Heartbeat(node.disconnect, interval=0.1, timeout=0.15)
    silent = peer(node, "silent", last_seen=time.monotonic())
    talker = peer(node, "talker", last_seen=time.monotonic())
    node.rooms.join(silent, "r")
    node.rooms.join(talker, "r")
    task = asyncio.get_running_loop().create_task(hb.run(node.clients.values()))
    late = peer(node, "late", last_seen=time.monotonic())
    hb.watch(late)  # connected after the start: filed when its task starts, not twice
    try:
        async with asyncio.timeout(TIMEOUT):
            while silent.open or late.open:
                if talker.ping_sent is not None:
                    await node.handle(talker, '{"type":"pong"}')
                await asyncio.sleep(0.01)
        await silent.wait_closed()
        assert silent.close_code == CloseCode.HEARTBEAT_TIMEOUT
        assert talker.open and node.clients["talker"] is talker and pings(talker) >= 1
        sent = [orjson.loads(f) for f in sent_to(talker).sent]
        leave = {"type": "presence", "room": "r", "event": "leave", "client_id": "silent"}
        assert {**leave, "kind": "ws"} in sent
        assert pings(silent) == 1 and pings(late) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not hb.running and len(hb) == 0
