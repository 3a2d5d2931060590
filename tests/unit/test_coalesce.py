"""Write coalescing: what a loop pass sends a peer leaves in one write, in order, bounded."""

from __future__ import annotations

import asyncio

import orjson

from wirehub.core.coalesce import Coalescer
from wirehub.core.connection import CORK_MAX_FRAMES, Connection
from wirehub.core.node import Node
from wirehub.core.outbound import Outbound, batch_frames, frames_for, ws_frame
from wirehub.core.protocol import message_frame


class CorkingPeer:
    """A raw-send socket: ``try_writelines`` takes a pass's frames in one write, unless paused."""

    kind = "ws"
    coalesces = True

    def __init__(self) -> None:
        self.paused = False
        self.writes: list[list[str | bytes]] = []  # one entry per write syscall
        self.sent: list[str | bytes] = []  # the slow path (ASGI send)

    def try_writelines(self, outs: list[Outbound]) -> bool:
        if self.paused:
            return False
        self.writes.append([out.text for out in outs])
        return True

    def try_write(self, out: Outbound) -> bool:
        if self.paused:
            return False
        self.writes.append([out.text])
        return True

    async def send(self, out: Outbound) -> None:
        self.sent.append(out.text)

    async def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass


async def idle(conn: Connection) -> Connection:
    conn.start()
    for _ in range(10):
        if conn._idle:
            break
        await asyncio.sleep(0)
    return conn


def texts(n: int, start: int = 0) -> list[str]:
    return [orjson.dumps({"n": i}).decode() for i in range(start, start + n)]


async def test_a_pass_of_deliveries_to_many_members_is_one_write_per_member_in_order():
    node = Node()
    peers = [CorkingPeer() for _ in range(20)]
    for i, peer in enumerate(peers):
        conn = Connection(f"c{i}", peer, coalescer=node.coalescer)
        node.connect(conn)
        await idle(conn)
        node.rooms.join(conn, "r")
    await asyncio.sleep(0)  # the presence joins of later members leave
    for peer in peers:
        peer.writes.clear()
    frames = [message_frame("r", "srv", {"n": n}, n, 0.0) for n in range(1, 6)]
    for n, frame in enumerate(frames, 1):
        assert node.deliver("r", frame, n) == 20
    assert all(peer.writes == [] for peer in peers)  # nothing written before the pass ends
    await asyncio.sleep(0)
    for peer in peers:
        assert peer.writes == [frames]  # one write with the five frames, in order
    assert node.coalescer.flushes >= 1


async def test_a_paused_socket_gets_the_pass_through_the_ordinary_path_in_order():
    coalescer = Coalescer()
    peer = CorkingPeer()
    conn = await idle(Connection("c", peer, coalescer=coalescer))
    peer.paused = True
    first = texts(3)
    for text in first:
        conn.send(text)
    await asyncio.sleep(0)  # the flush is declined: the frames go to send, in order
    for text in texts(2, 3):
        conn.send(text)  # sent while the first ones are still queued: after them
    for _ in range(20):
        if len(peer.sent) == 5:
            break
        await asyncio.sleep(0)
    assert peer.sent == texts(5) and peer.writes == []
    assert conn.frames_out == 5


async def test_a_cork_is_flushed_when_it_reaches_its_bound():
    coalescer = Coalescer()
    peer = CorkingPeer()
    conn = await idle(Connection("c", peer, coalescer=coalescer))
    sent = texts(CORK_MAX_FRAMES + 10)
    for text in sent:
        assert conn.send(text)
    assert len(peer.writes) == 1 and len(peer.writes[0]) == CORK_MAX_FRAMES
    await asyncio.sleep(0)
    assert [t for write in peer.writes for t in write] == sent and len(peer.writes) == 2
    assert conn.queued == 0


async def test_close_drops_what_is_corked_and_a_draining_close_writes_it():
    coalescer = Coalescer()
    dropped, drained = CorkingPeer(), CorkingPeer()
    a = await idle(Connection("a", dropped, coalescer=coalescer))
    b = await idle(Connection("b", drained, coalescer=coalescer))
    a.send("1")
    b.send("1")
    a.close(1000)
    b.close(1000, drain=True)
    await asyncio.sleep(0)
    assert dropped.writes == [] and drained.writes == [["1"]]
    await asyncio.gather(a.wait_closed(), b.wait_closed())


def unframe_all(data: bytes) -> list[tuple[int, bytes]]:
    frames, at = [], 0
    while at < len(data):
        size, start = data[at + 1], at + 2
        if size == 126:
            size, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        frames.append((data[at], data[start : start + size]))
        at = start + size
    return frames


def test_batched_frames_join_text_messages_with_lf_within_both_bounds_and_keep_binary_alone():
    outs = [Outbound(t) for t in texts(20)]
    frames = batch_frames(outs, 16, 65536)
    payloads = [payload for _, payload in unframe_all(b"".join(frames))]
    assert [p.count(b"\n") + 1 for p in payloads] == [16, 4]
    assert b"\n".join(payloads).split(b"\n") == [t.encode() for t in texts(20)]
    big = [Outbound("x" * 600) for _ in range(5)]
    assert [len(f) for f in batch_frames(big, 16, 1300)] == [len(ws_frame(b"x" * 1201))] * 2 + [
        len(big[4].ws_frame)
    ]
    mixed = [Outbound("a"), Outbound("b"), Outbound(b"\x00"), Outbound("c")]
    assert [unframe_all(f)[0] for f in batch_frames(mixed, 16, 65536)] == [
        (0x81, b"a\nb"),
        (0x82, b"\x00"),
        (0x81, b"c"),
    ]
    alone = Outbound("solo")
    assert batch_frames([alone], 16, 65536)[0] is alone.ws_frame  # the shared bytes


def test_members_that_get_the_same_messages_share_one_batched_frame():
    outs = [Outbound(t) for t in texts(5)]
    first = batch_frames(list(outs), 16, 65536)
    again = batch_frames(list(outs), 16, 65536)
    assert first[0] is again[0]  # built once for every member of the room
    other = batch_frames([outs[0], Outbound("x"), *outs[2:]], 16, 65536)
    assert other[0] is not first[0] and other[0] != first[0]


def test_members_that_get_the_same_pass_share_one_list_of_frames():
    outs = [Outbound(t) for t in texts(3)]
    plain = frames_for(list(outs), None)
    assert frames_for(list(outs), None) is plain  # the second member reuses the first's
    assert plain == [out.ws_frame for out in outs]
    batched = frames_for(list(outs), (16, 65536))
    assert batched is not plain and len(batched) == 1  # another form: built anew
    assert frames_for(list(outs), (16, 65536)) is batched
    fewer = frames_for(outs[:2], None)
    assert fewer == plain[:2] and fewer is not plain


async def test_a_socket_that_breaks_in_the_flush_is_lost_and_the_others_still_get_theirs():
    class Broken(CorkingPeer):
        def try_writelines(self, outs: list[Outbound]) -> bool:
            raise ConnectionResetError("reset by peer")

    coalescer = Coalescer()
    broken, fine = Broken(), CorkingPeer()
    a = await idle(Connection("a", broken, coalescer=coalescer))
    b = await idle(Connection("b", fine, coalescer=coalescer))
    for conn in (a, b):
        conn.send("1")
    await asyncio.sleep(0)
    assert fine.writes == [["1"]]
    assert not a.open and a.close_code == 1001  # gone, like a peer that went away
    assert a.send("2") is False
