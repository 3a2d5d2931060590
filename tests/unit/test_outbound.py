"""One outbound envelope per publish: its forms, and a fan-out that builds each once."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from wirehub.core.connection import Connection
from wirehub.core.node import Node
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import message_frame


class FastPeer:
    """A socket that takes every frame at once through ``try_write`` (a raw-send server)."""

    kind = "ws"

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.written: list[bytes] = []
        self.sent: list[Outbound] = []

    coalesces = False

    def try_writelines(self, outs: list[Outbound]) -> bool:
        return False

    def try_write(self, out: Outbound) -> bool:
        if not self.accept:
            return False
        self.written.append(out.ws_frame)
        return True

    async def send(self, out: Outbound) -> None:
        self.sent.append(out)

    async def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass


def unframe(frame: bytes) -> tuple[int, bytes]:
    """(opcode byte, payload) of an unmasked server frame."""
    size = frame[1]
    start = 2
    if size == 126:
        size, start = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(frame[2:10], "big"), 10
    payload = frame[start:]
    assert len(payload) == size
    return frame[0], payload


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_the_frame_bytes_carry_the_text_whole_for_every_length_class(size):
    text = "é" * (size // 2) + "x" * (size % 2)
    opcode, payload = unframe(Outbound(text).ws_frame)
    assert opcode == 0x81 and payload.decode() == text


def test_a_binary_frame_gets_the_binary_opcode_and_its_asgi_message_bytes():
    out = Outbound(b"\x00\xff")
    assert unframe(out.ws_frame) == (0x82, b"\x00\xff")
    assert out.asgi == {"type": "websocket.send", "bytes": b"\x00\xff"}
    assert Outbound("hi").asgi == {"type": "websocket.send", "text": "hi"}


def test_each_form_is_built_once_per_envelope_and_owner():
    out = Outbound('{"type":"message","data":1}')
    assert out.ws_frame is out.ws_frame and out.asgi is out.asgi
    parses: list[object] = []

    def loads(text: str | bytes) -> object:
        parses.append(text)
        return orjson.loads(text)

    assert out.parsed(loads) == {"type": "message", "data": 1}
    assert out.parsed(loads) is out.parsed(loads) and len(parses) == 1
    built: list[str] = []

    def tcp(owner: str):
        def build(o: Outbound) -> bytes:
            built.append(owner)
            return owner.encode() + b":" + str(o.parsed(loads)["data"]).encode()

        return build

    a, b = object(), object()
    assert out.form(a, tcp("a")) == b"a:1" and out.form(a, tcp("a")) == b"a:1"
    assert out.form(b, tcp("b")) == b"b:1"
    assert built == ["a", "b"] and len(parses) == 1  # one parse for both bridges


async def started(node: Node, peers: list[FastPeer], room: str = "r") -> list[Connection]:
    conns = []
    for i, transport in enumerate(peers):
        conn = Connection(f"c{i}", transport)
        conn.start()
        node.connect(conn)
        conns.append(conn)
    await asyncio.sleep(0)  # each writer reaches idle
    for conn in conns:
        node.rooms.join(conn, room)
    return conns


async def test_a_fan_out_writes_one_frame_object_to_every_member_through_try_write():
    node = Node()
    peers = [FastPeer() for _ in range(50)]
    conns = await started(node, peers)
    for p in peers:
        p.written.clear()  # presence joins of later members
    frame = message_frame("r", "srv", {"n": 1}, 1, 0.0)
    assert node.deliver("r", frame, 1) == 50
    written = [p.written[-1] for p in peers]
    assert all(w is written[0] for w in written)  # framed once, the same bytes for all
    assert orjson.loads(unframe(written[0])[1]) == orjson.loads(frame)
    assert all(c.frames_out >= 1 and c.queued == 0 for c in conns)
    assert all(p.sent == [] for p in peers)  # nothing went through the slow path


async def test_a_declining_transport_gets_the_frame_through_send_and_single_sends_still_take_str():
    node = Node()
    peer = FastPeer(accept=False)
    (conn,) = await started(node, [peer])
    assert conn.send('{"type":"pong"}') is True  # a single send: a plain str
    node.deliver("r", message_frame("r", "srv", "hi", 1, 0.0), 1)
    for _ in range(10):
        if len(peer.sent) >= 2:
            break
        await asyncio.sleep(0)
    assert [orjson.loads(out.text)["type"] for out in peer.sent][-2:] == ["pong", "message"]
    assert peer.written == [] and conn.frames_out == len(peer.sent)
    conn.transport_lost()
