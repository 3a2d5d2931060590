"""Write coalescing: what a loop pass sends a peer leaves in one write, in order, bounded.

The room pass (core/coalesce.py) puts one shared list in each member's cork;
the tests after the framing ones drive the cases where a member must leave
that list — another room's message in between, a reply, being excluded,
joining or leaving mid-pass, a pass over its bounds, a paused socket — and
check each peer's writes frame by frame.
"""

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

        def try_write(self, out: Outbound) -> bool:
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


# -- room passes ---------------------------------------------------------------


def received(peer: CorkingPeer) -> list[str | bytes]:
    return [text for write in peer.writes for text in write] + peer.sent


async def members(node: Node, count: int, *rooms: str) -> list[tuple[Connection, CorkingPeer]]:
    made = []
    for _ in range(count):
        peer = CorkingPeer()
        conn = await idle(Connection(f"m{len(node.clients)}", peer, coalescer=node.coalescer))
        node.connect(conn)
        for room in rooms:
            node.rooms.join(conn, room)
        made.append((conn, peer))
    await asyncio.sleep(0)
    for _, peer in made:
        peer.writes.clear()
    return made


async def room_of(count: int) -> tuple[Node, list[tuple[Connection, CorkingPeer]]]:
    """A node whose room ``r`` has ``count`` corking members (no presence events)."""
    node = Node()
    no_presence(node)
    return node, await members(node, count, "r")


def no_presence(node: Node, *rooms: str) -> None:
    for room in rooms:
        node.rooms.ensure(room)
    node.rooms._policies.insert(0, type(node.rooms.policy_for("x"))(presence_events=False))


async def test_a_burst_to_a_room_is_one_cork_entry_and_one_write_per_member():
    node = Node()
    no_presence(node)
    crowd = await members(node, 50, "r")
    frames = [f"m{n}" for n in range(40)]
    for n, frame in enumerate(frames, 1):
        assert node.deliver("r", frame, n) == 50  # every member counted
    assert all(len(conn._cork or ()) == 1 for conn, _ in crowd)  # one shared entry each
    await asyncio.sleep(0)
    assert all(peer.writes == [frames] for _, peer in crowd)
    room = node.rooms.get("r")
    assert room.pending is not None and not room.pending.open  # the pass is over
    node.deliver("r", "next", 41)
    await asyncio.sleep(0)
    assert all(peer.writes == [frames, ["next"]] for _, peer in crowd)


async def test_a_member_of_two_rooms_gets_their_interleaved_messages_in_send_order():
    node = Node()
    no_presence(node)
    both = await members(node, 3, "a", "b")
    only_a = await members(node, 3, "a")
    sent = []
    for n in range(1, 6):
        for room in ("a", "b"):
            frame = f"{room}{n}"
            node.deliver(room, frame, n)
            sent.append(frame)
    await asyncio.sleep(0)
    for _, peer in both:
        assert received(peer) == sent
        assert len(peer.writes) == 1  # still one write for the whole pass
    for _, peer in only_a:
        assert received(peer) == [f for f in sent if f.startswith("a")]


async def test_a_reply_between_two_room_messages_stays_between_them():
    node = Node()
    no_presence(node)
    crowd = await members(node, 4, "r")
    (conn, peer), others = crowd[0], crowd[1:]
    node.deliver("r", "m1", 1)
    conn.send("reply")
    node.deliver("r", "m2", 2)
    node.deliver("r", "m3", 3)
    await asyncio.sleep(0)
    assert received(peer) == ["m1", "reply", "m2", "m3"]
    assert all(received(p) == ["m1", "m2", "m3"] for _, p in others)


async def test_an_excluded_member_misses_only_the_messages_it_is_excluded_from():
    node = Node()
    no_presence(node)
    crowd = await members(node, 4, "r")
    (publisher, its_peer), others = crowd[0], crowd[1:]
    assert node.deliver("r", "own1", 1, exclude=publisher.id) == 3
    assert node.deliver("r", "other", 2) == 4
    assert node.deliver("r", "own2", 3, exclude=publisher.id) == 3
    node.deliver("r", "other2", 4)
    await asyncio.sleep(0)
    assert received(its_peer) == ["other", "other2"]
    assert all(received(p) == ["own1", "other", "own2", "other2"] for _, p in others)


async def test_joining_mid_pass_gets_what_follows_and_leaving_mid_pass_keeps_what_came_before():
    node, crowd = await room_of(3)
    (leaver, leaver_peer), stayers = crowd[0], crowd[1:]
    node.deliver("r", "m1", 1)
    joiner_peer = CorkingPeer()
    joiner = await idle(Connection("late", joiner_peer, coalescer=node.coalescer))
    node.connect(joiner)
    # idle() yielded to the loop: m1's pass is over; make a new one and join in it.
    node.deliver("r", "m2", 2)
    node.rooms.join(joiner, "r")
    node.deliver("r", "m3", 3)
    node.rooms.leave(leaver, "r")
    node.deliver("r", "m4", 4)
    await asyncio.sleep(0)
    assert received(joiner_peer) == ["m3", "m4"]
    assert received(leaver_peer) == ["m1", "m2", "m3"]
    assert all(received(p) == ["m1", "m2", "m3", "m4"] for _, p in stayers)


async def test_a_pass_over_the_cork_bound_writes_more_than_once_and_loses_nothing():
    node = Node()
    no_presence(node)
    crowd = await members(node, 5, "r")
    frames = [f"m{n}" for n in range(CORK_MAX_FRAMES * 3 + 7)]
    for n, frame in enumerate(frames, 1):
        node.deliver("r", frame, n)
    await asyncio.sleep(0)
    for conn, peer in crowd:
        assert received(peer) == frames
        assert all(len(write) <= CORK_MAX_FRAMES for write in peer.writes)
        assert conn.queued == 0


async def test_a_member_whose_own_cork_fills_mid_pass_still_gets_the_rest_of_the_pass():
    node, crowd = await room_of(3)
    (busy, busy_peer), others = crowd[0], crowd[1:]
    node.deliver("r", "m1", 1)
    replies = [f"d{n}" for n in range(CORK_MAX_FRAMES)]
    for reply in replies:
        busy.send(reply)  # the cork fills and is written before the pass ends
    node.deliver("r", "m2", 2)
    await asyncio.sleep(0)
    assert received(busy_peer) == ["m1", *replies, "m2"]
    assert all(received(p) == ["m1", "m2"] for _, p in others)


async def test_a_paused_member_takes_the_ordinary_path_and_the_others_are_untouched():
    node, crowd = await room_of(3)
    (paused, paused_peer), others = crowd[0], crowd[1:]
    paused_peer.paused = True
    for n in range(1, 4):
        node.deliver("r", f"m{n}", n)
    await asyncio.sleep(0)
    node.deliver("r", "m4", 4)  # while m1-m3 wait for its writer: after them
    for _ in range(20):
        if len(paused_peer.sent) == 4:
            break
        await asyncio.sleep(0)
    assert paused_peer.sent == ["m1", "m2", "m3", "m4"] and paused_peer.writes == []
    assert all(received(p) == ["m1", "m2", "m3", "m4"] for _, p in others)
    assert paused.frames_out == 4


async def test_a_member_closed_mid_pass_gets_nothing_more_and_the_others_everything():
    node, crowd = await room_of(3)
    (gone, gone_peer), others = crowd[0], crowd[1:]
    node.deliver("r", "m1", 1)
    gone.close(1000)
    node.deliver("r", "m2", 2)
    await asyncio.sleep(0)
    assert gone_peer.writes == []  # a close drops what was corked, as before
    assert all(received(p) == ["m1", "m2"] for _, p in others)


async def test_members_that_cannot_cork_get_every_message_beside_those_that_do():
    class Plain(CorkingPeer):
        coalesces = False

    node = Node()
    no_presence(node)
    corking = await members(node, 2, "r")
    plain_peer = Plain()
    plain = await idle(Connection("plain", plain_peer, coalescer=node.coalescer))
    node.connect(plain)
    node.rooms.join(plain, "r")
    lone = await members(node, 1, "solo")
    (lone_conn, lone_peer) = lone[0]
    for n in range(1, 4):
        assert node.deliver("r", f"m{n}", n) == 3
        # The lone member is excluded from its own room's messages: no pass is held.
        assert node.deliver("solo", f"s{n}", n, exclude=lone_conn.id) == 0
    node.deliver("solo", "s4", 4)
    await asyncio.sleep(0)
    assert [w for w in plain_peer.writes] == [["m1"], ["m2"], ["m3"]]  # one by one
    assert all(received(p) == ["m1", "m2", "m3"] for _, p in corking)
    assert received(lone_peer) == ["s4"]
