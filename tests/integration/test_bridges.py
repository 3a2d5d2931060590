"""TCP bridges against a real hub: real TCP sockets, real WebSocket clients.

Every wait is on a signal (a presence event, a frame, bytes on a socket, EOF),
never on a bare sleep; ``nothing_on`` is the one bounded "no bytes arrive" check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import struct
from typing import Any

import httpx
import pytest

from support import FACTOR, TIMEOUT, unused_port


def bridge(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "port": unused_port(), "room": name, **fields}


class Tcp:
    """A TCP client of a bridge: raw bytes, lines, length-prefixed frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.local = f"{host}:{port}"

    def id(self, bridge_name: str) -> str:
        return f"tcp:{bridge_name}:{self.local}"

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), TIMEOUT * FACTOR)

    async def exactly(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT * FACTOR)

    async def frame(self) -> bytes:
        (size,) = struct.unpack(">I", await self.exactly(4))
        return await self.exactly(size)

    async def eof(self) -> bytes:
        """Read until the server closes; returns what came before."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT * FACTOR)

    async def nothing_on(self, within: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(self.reader.read(1), within)
            raise AssertionError(f"unexpected bytes {got!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def tcp():
    opened: list[Tcp] = []

    async def connect(port: int) -> Tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = Tcp(reader, writer)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


async def member(ws, room: str, tcp_client: Tcp, name: str) -> str:
    """Wait until the TCP client shows in the room's presence; returns its id."""
    client_id = tcp_client.id(name)
    await ws.wait_for("presence", room=room, event="join", client_id=client_id)
    return client_id


async def watcher(ws_client, running, *rooms: str):
    ws = await ws_client(running.ws, "watcher")
    for room in rooms:
        await ws.request("join", room=room)
    return ws


def port_of(running, name: str) -> int:
    return running.hub.bridges[name].port


# -- both ways -------------------------------------------------------------------------


async def test_three_bridges_carry_data_both_ways(hub_server, ws_client, tcp):
    running = await hub_server(
        bridges=[
            bridge("lines"),
            bridge("json", framing="jsonl"),
            bridge("frames", framing="length"),
        ]
    )
    ws = await watcher(ws_client, running, "lines", "json", "frames")
    a = await tcp(port_of(running, "lines"))
    a_id = await member(ws, "lines", a, "lines")
    b = await tcp(port_of(running, "json"))
    b_id = await member(ws, "json", b, "json")
    c = await tcp(port_of(running, "frames"))
    c_id = await member(ws, "frames", c, "frames")

    # TCP → room: each frame is a message from the TCP client's id.
    await a.send(b"temp 21.5\n")
    msg = await ws.expect("message", room="lines", data="temp 21.5")
    assert msg["from"] == a_id
    await b.send(b'{"temp": 21.5, "unit": "C"}\n')
    msg = await ws.expect("message", room="json", data={"temp": 21.5, "unit": "C"})
    assert msg["from"] == b_id
    await c.send(struct.pack(">I", 5) + b"hello")
    msg = await ws.expect("message", room="frames", data="hello")
    assert msg["from"] == c_id

    # Room → TCP, each in its bridge's framing.
    await ws.request("publish", room="lines", data="set 22")
    assert await a.line() == b"set 22\n"
    await ws.request("publish", room="json", data={"set": 22})
    assert await b.line() == b'{"set":22}\n'
    await ws.request("publish", room="frames", data="set 22")
    assert await c.frame() == b"set 22"

    # HTTP publish and the server API reach TCP clients too.
    async with httpx.AsyncClient(base_url=running.http) as http:
        r = await http.post("/api/rooms/lines/publish", json={"data": "from http"})
        assert r.status_code == 200
        assert await a.line() == b"from http\n"
        await running.hub.publish("lines", {"from": "server"})
        assert await a.line() == b'{"from":"server"}\n'
        clients = {c["id"]: c for c in (await http.get("/api/clients")).json()}
    for client_id, room in ((a_id, "lines"), (b_id, "json"), (c_id, "frames")):
        assert clients[client_id]["kind"] == "tcp"
        assert clients[client_id]["rooms"] == [room]
    presence = await ws.request("presence", room="lines")
    assert sorted(presence["members"]) == sorted([a_id, "watcher"])


async def test_no_echo_and_direct_reaches_one_tcp_client(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("dev")])
    ws = await watcher(ws_client, running, "dev")
    one = await tcp(port_of(running, "dev"))
    one_id = await member(ws, "dev", one, "dev")
    two = await tcp(port_of(running, "dev"))
    two_id = await member(ws, "dev", two, "dev")

    await one.send(b"ping from one\n")
    await ws.expect("message", data="ping from one", **{"from": one_id})
    assert await two.line() == b"ping from one\n"  # the other TCP member gets it
    await one.nothing_on()  # ...and the sender does not get its own frame back

    await ws.request("direct", to=two_id, data="only you")
    assert await two.line() == b"only you\n"
    await one.nothing_on()
    await running.hub.send(one_id, "server says hi")
    assert await one.line() == b"server says hi\n"


async def test_direction_in_and_out(hub_server, ws_client, tcp):
    running = await hub_server(
        bridges=[bridge("up", direction="in"), bridge("down", direction="out")]
    )
    ws = await watcher(ws_client, running, "up", "down")
    up = await tcp(port_of(running, "up"))
    await member(ws, "up", up, "up")
    down = await tcp(port_of(running, "down"))
    await member(ws, "down", down, "down")

    # in: TCP → room works, room → TCP does not.
    await up.send(b"reading\n")
    await ws.expect("message", room="up", data="reading")
    await ws.request("publish", room="up", data="command")
    await up.nothing_on()

    # out: room → TCP works, TCP → room is dropped and counted.
    await ws.request("publish", room="down", data="command")
    assert await down.line() == b"command\n"
    await down.send(b"ignored\n")
    await down.send(b"ignored too\n")
    async with httpx.AsyncClient(base_url=running.http) as http:
        for _ in range(100):
            stats = (await http.get("/api/bridges/down")).json()
            if stats["drops"] == 2:
                break
            await asyncio.sleep(0.02)
    assert stats["drops"] == 2 and stats["frames_in"] == 2
    await ws.no_frame()


# -- every framing: split reads, many frames per read, binary --------------------------


async def test_line_framing_split_reads_many_per_read_and_invalid_utf8(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("l")])
    ws = await watcher(ws_client, running, "l")
    dev = await tcp(port_of(running, "l"))
    await member(ws, "l", dev, "l")
    await dev.send(b"hel")
    await ws.no_frame(0.1)  # a partial line is buffered, not published
    await dev.send(b"lo\r\nwor")
    await dev.send(b"ld\nx\ny\n\xff\xfebad utf-8\n")
    for expected in ("hello", "world", "x", "y", "\ufffd\ufffdbad utf-8"):
        await ws.expect("message", room="l", data=expected)


async def test_length_framing_binary_with_base64(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("bin", framing="length", encoding="base64")])
    ws = await watcher(ws_client, running, "bin")
    dev = await tcp(port_of(running, "bin"))
    await member(ws, "bin", dev, "bin")
    blobs = [bytes(range(256)), b"\x00\n\r\xff", b""]
    stream = b"".join(struct.pack(">I", len(b)) + b for b in blobs)
    await dev.send(stream[:3])  # a split header
    await dev.send(stream[3:300])  # a split body
    await dev.send(stream[300:])  # the rest of it and two more frames in one read
    for blob in blobs:
        msg = await ws.expect("message", room="bin")
        assert msg["data"] == {"encoding": "base64", "data": base64.b64encode(blob).decode()}
    # Back: a base64 object (or string) becomes the raw bytes, length-prefixed.
    await ws.request(
        "publish",
        room="bin",
        data={"encoding": "base64", "data": base64.b64encode(b"\x01\x02").decode()},
    )
    assert await dev.frame() == b"\x01\x02"


async def test_raw_framing_each_read_is_a_message(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("raw", framing="raw", encoding="base64")])
    ws = await watcher(ws_client, running, "raw")
    dev = await tcp(port_of(running, "raw"))
    await member(ws, "raw", dev, "raw")
    await dev.send(b"\x00\x01\x02\n")
    msg = await ws.expect("message", room="raw")
    assert base64.b64decode(msg["data"]["data"]) == b"\x00\x01\x02\n"
    await dev.send(b"\xff")
    msg = await ws.expect("message", room="raw")
    assert base64.b64decode(msg["data"]["data"]) == b"\xff"
    await ws.request("publish", room="raw", data=base64.b64encode(b"\xde\xad").decode())
    assert await dev.exactly(2) == b"\xde\xad"


async def test_jsonl_split_reads_many_per_read_and_invalid_json(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("j", framing="jsonl")])
    ws = await watcher(ws_client, running, "j", "$bridges")
    dev = await tcp(port_of(running, "j"))
    dev_id = await member(ws, "j", dev, "j")
    await dev.send(b'{"a":')
    await dev.send(b' 1}\n[1, 2]\n"text"\n{oops\n')
    await ws.expect("message", room="j", data={"a": 1})
    await ws.expect("message", room="j", data=[1, 2])
    await ws.expect("message", room="j", data="text")
    err = await ws.expect("message", room="$bridges")
    assert err["data"]["event"] == "error" and err["data"]["code"] == "bad_request"
    assert err["data"]["client_id"] == dev_id and err["data"]["bridge"] == "j"
    assert "invalid JSON line" in err["data"]["message"]
    # The connection stays.
    await dev.send(b"42\n")
    await ws.expect("message", room="j", data=42)


async def test_flooding_client_is_read_as_fast_as_the_hub_delivers(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("flood")], limits={"queue_max_messages": 256})
    ws = await watcher(ws_client, running, "flood")
    dev = await tcp(port_of(running, "flood"))
    await member(ws, "flood", dev, "flood")
    count = 5000
    await dev.send(b"".join(b"%d\n" % i for i in range(count)))
    # Thousands of frames arrive in one read, yet a subscriber with a queue of
    # 256 gets every one: the bridge publishes at the pace the writers drain.
    for i in range(count):
        msg = await ws.recv()
        assert msg["data"] == str(i)
    assert running.hub.node.slow_consumers == 0


async def test_tcp_client_that_does_not_read_is_a_slow_consumer(hub_server, ws_client):
    running = await hub_server(
        bridges=[bridge("slow")], limits={"queue_max_messages": 32, "close_timeout": 0.5}
    )
    ws = await watcher(ws_client, running, "slow")
    # A tiny receive buffer that nobody reads: the hub's writes back up quickly.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(running, "slow")))
    reader, writer = await asyncio.open_connection(sock=sock)
    client = Tcp(reader, writer)
    client_id = await member(ws, "slow", client, "slow")
    try:
        blob = "x" * 4000
        for _ in range(5000):
            await running.hub.publish("slow", blob)
            await asyncio.sleep(0)
            if client_id not in running.hub.node.clients:
                break
        assert client_id not in running.hub.node.clients
        assert running.hub.node.slow_consumers == 1
        await ws.wait_for("presence", room="slow", event="leave", client_id=client_id)
        with contextlib.suppress(ConnectionError):
            await client.eof()
    finally:
        await client.close()


# -- bad input ---------------------------------------------------------------------------


async def test_line_over_max_frame_is_rejected_and_the_connection_stays(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("l", max_frame=32)])
    ws = await watcher(ws_client, running, "l", "$bridges")
    dev = await tcp(port_of(running, "l"))
    dev_id = await member(ws, "l", dev, "l")
    await dev.send(b"short\n" + b"x" * 50)
    await dev.send(b"y" * 50 + b"\nafter\n")
    await ws.expect("message", room="l", data="short")
    err = await ws.expect("message", room="$bridges")
    assert err["data"]["code"] == "too_large" and err["data"]["client_id"] == dev_id
    assert "exceeds max_frame 32" in err["data"]["message"]
    await ws.expect("message", room="l", data="after")
    stats = running.hub.bridges["l"].stats()
    assert stats["errors"] == {"too_large": 1}


async def test_length_prefix_over_max_frame_disconnects_that_client(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("f", framing="length", max_frame=64)])
    ws = await watcher(ws_client, running, "f", "$bridges")
    bad = await tcp(port_of(running, "f"))
    bad_id = await member(ws, "f", bad, "f")
    good = await tcp(port_of(running, "f"))
    good_id = await member(ws, "f", good, "f")
    await bad.send(struct.pack(">I", 65) + b"z" * 65)
    err = await ws.wait_for("message", room="$bridges")
    assert err["data"]["code"] == "too_large" and err["data"]["client_id"] == bad_id
    assert "length prefix 65 exceeds max_frame 64" in err["data"]["message"]
    assert await bad.eof() == b""
    await ws.wait_for("presence", room="f", event="leave", client_id=bad_id)
    # Everyone else goes on.
    await good.send(struct.pack(">I", 2) + b"ok")
    await ws.wait_for("message", room="f", data="ok", **{"from": good_id})


async def test_client_silent_until_idle_timeout_is_closed(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("idle", idle_timeout=0.3)])
    ws = await watcher(ws_client, running, "idle", "$bridges")
    quiet = await tcp(port_of(running, "idle"))
    quiet_id = await member(ws, "idle", quiet, "idle")
    assert await quiet.eof() == b""
    err = await ws.wait_for("message", room="$bridges")
    assert err["data"]["code"] == "idle_timeout" and err["data"]["client_id"] == quiet_id
    assert quiet_id not in running.hub.node.clients


async def test_max_clients_exceeded_refuses_the_extra_client(hub_server, ws_client, tcp):
    running = await hub_server(bridges=[bridge("one", max_clients=1)])
    ws = await watcher(ws_client, running, "one", "$bridges")
    first = await tcp(port_of(running, "one"))
    first_id = await member(ws, "one", first, "one")
    extra = await tcp(port_of(running, "one"))
    assert await extra.eof() == b""
    err = await ws.expect("message", room="$bridges")
    assert err["data"]["code"] == "limit_exceeded"
    assert "maximum of 1 clients" in err["data"]["message"]
    assert running.hub.bridges["one"].stats()["rejected"] == 1
    await first.send(b"still here\n")
    await ws.expect("message", room="one", data="still here", **{"from": first_id})


async def test_device_codec_both_ways_and_its_errors(hub_server, ws_client, tcp):
    codec = "wirehub.bridges.example_codec"
    running = await hub_server(
        bridges=[
            bridge(
                "sensors",
                framing="length",
                decoder=f"{codec}:decode_reading",
                encoder=f"{codec}:encode_reading",
            )
        ]
    )
    ws = await watcher(ws_client, running, "sensors", "$bridges")
    dev = await tcp(port_of(running, "sensors"))
    dev_id = await member(ws, "sensors", dev, "sensors")
    reading = struct.pack(">BhH", 1, 215, 402)
    await dev.send(struct.pack(">I", 5) + reading + struct.pack(">I", 1) + b"?")
    await ws.expect("message", room="sensors", data={"sensor": 1, "temp": 21.5, "humidity": 40.2})
    err = await ws.expect("message", room="$bridges")
    assert err["data"]["code"] == "codec_error" and err["data"]["client_id"] == dev_id
    assert "decoder failed" in err["data"]["message"]
    # The bridge lives on: the next frame decodes.
    await dev.send(struct.pack(">I", 5) + struct.pack(">BhH", 2, -50, 999))
    await ws.expect("message", room="sensors", data={"sensor": 2, "temp": -5.0, "humidity": 99.9})
    # Back to the device through the encoder; a value it cannot encode is an error event.
    await ws.request("publish", room="sensors", data={"sensor": 3, "temp": 1.5, "humidity": 2.0})
    assert await dev.frame() == struct.pack(">BhH", 3, 15, 20)
    await ws.request("publish", room="sensors", data="not a reading")
    err = await ws.wait_for("message", room="$bridges")
    assert err["data"]["code"] == "codec_error" and "encoder failed" in err["data"]["message"]
    await ws.request("publish", room="sensors", data={"sensor": 4, "temp": 0, "humidity": 0})
    assert await dev.frame() == struct.pack(">BhH", 4, 0, 0)
