"""Load generator for bench/fanout.py: many WebSocket clients in one process.

Two clients, chosen with ``--client``: ``picows`` (the default when picows is
installed: bench/loadgen_picows.py, frames parsed in C) and ``raw``, a minimal
RFC 6455 implementation on a raw asyncio Protocol (uvloop) whose server frames
are parsed in Python straight from the receive buffer and whose client frames
are masked with a zero key. The websockets library's own client costs several
times more CPU per received frame, and on a 2-core machine the load generator
has one core and the server the other: the cheaper the client, the less the
load generator caps what a server can show. bench/fanout.py prints the load
generator's CPU per delivery so the choice can be checked.

``--batch``: connect with ``/ws?batch=1`` and treat every text frame as one or
more newline-delimited JSON messages (the batched-frames mode a server may
offer; it says so with ``"batch": true`` in ``welcome``, which the ``probe``
role reports).

Four roles, driven by bench/fanout.py over stdin/stdout (one JSON object per
line on stdout; ``go`` / ``stop`` lines on stdin):

* ``sub``: N subscribers join the room, print ``ready``; record the latency of
  each ``message`` (receive time minus the ``t`` the publisher put in ``data``,
  same machine clock); print ``done`` once every reading subscriber has
  ``--expect`` messages; on ``stop`` print ``result`` and write the latencies
  then their publish times (float64 seconds, two arrays of one length) to
  ``--out``. ``--paused K``: the first K subscribers stop reading their socket
  right after ``joined``; on ``stop`` they read again and report whether the
  server closed them (close code, reset) or not.
* ``pub``: one publisher joins, prints ``ready``, waits for ``go``, publishes
  ``--count`` messages either with ``--window`` publishes awaiting their ``ack``
  (as fast as the server takes them) or at a fixed ``--rate`` per second, then
  prints ``result`` and waits for ``stop``.
* ``idle``: N clients connect and join, print ``ready``, then hold their sockets
  until ``stop``.
* ``probe``: one client connects and joins, prints ``probe`` with the server's
  ``welcome`` frame (``null`` if it sent none before ``joined``), and exits.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import os
import resource
import sys
import time
from typing import Any

import orjson
import uvloop

try:
    from loadgen_picows import PicowsClient
except ImportError:  # picows is in the ``bench`` extra; the raw client needs nothing
    PicowsClient = None  # type: ignore[assignment,misc]

__all__ = ["Client", "main"]

ZERO_MASK = b"\x00\x00\x00\x00"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """Encode a masked client frame (mask key 0, so the payload is sent as is)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + ZERO_MASK + payload


class Client(asyncio.Protocol):
    """One WebSocket client: handshake, frame parser, callbacks into its owner."""

    def __init__(self, owner: Any, client_id: str, host: str, port: int, batch: bool) -> None:
        self.owner = owner
        self.id = client_id
        self.host = host
        self.port = port
        self.batch = batch
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.error: str | None = None
        self.received = 0
        self.paused = False
        self.welcome: dict[str, Any] | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws?client_id={self.id}{'&batch=1' if self.batch else ''} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if exc is not None and self.error is None:
            self.error = type(exc).__name__
        for fut in (self.opened, self.joined):
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.id}: connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.error = status.decode("latin-1")
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"{self.id}: {self.error}"))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.open = True
            self.opened.set_result(None)
        now = time.time()
        pos = 0
        n = len(buf)
        on_text = self.owner.on_text
        batch = self.batch
        while n - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            end = pos + header + length
            if end > n:
                break
            opcode = b0 & 0x0F
            payload = buf[pos + header : end]
            pos = end
            if opcode == 1:
                if batch:
                    for part in payload.split(b"\n"):
                        if part:
                            on_text(self, part, now)
                else:
                    on_text(self, payload, now)
            elif opcode == 9:
                self.transport.write(client_frame(0xA, bytes(payload)))  # type: ignore[union-attr]
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                with contextlib.suppress(Exception):
                    self.transport.write(client_frame(0x8, bytes(payload[:2])))  # type: ignore[union-attr]
                self.transport.close()  # type: ignore[union-attr]
                break
        del buf[:pos]

    # -- sending -----------------------------------------------------------------

    def send_json(self, obj: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(0x1, orjson.dumps(obj)))

    def pause_reading(self) -> None:
        self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        self.transport.resume_reading()  # type: ignore[union-attr]

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def client_class(name: str) -> Any:
    if name == "picows":
        if PicowsClient is None:
            raise SystemExit("--client picows needs picows: pip install -e '.[bench]'")
        return PicowsClient
    return Client


async def connect_all(owner: Any, count: int, room: str, *, parallel: int = 100) -> list[Any]:
    """Open ``count`` clients and join them to ``room``, ``parallel`` handshakes at a time."""
    args = owner.args
    cls = client_class(args.client)
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> Any:
        async with sem:
            for attempt in range(5):
                client = cls(owner, f"{args.prefix}-{i}", args.host, args.port, args.batch)
                try:
                    await client.connect()
                    break
                except OSError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            await asyncio.wait_for(client.opened, 30)
            client.send_json({"type": "join", "room": room})
            await asyncio.wait_for(client.joined, 30)
            return client

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_for_line(reader: asyncio.StreamReader, word: str) -> None:
    while True:
        line = await reader.readline()
        if not line or line.strip().decode() == word:
            return


# -- roles ------------------------------------------------------------------------


class Subscribers:
    """The ``sub`` role: count and time every ``message`` each subscriber gets."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.latencies = array.array("d")
        #: Each latency's publish time (publisher's clock): when a stall happened.
        self.sent_at = array.array("d")
        self.expect = args.expect
        self.reading = args.clients - args.paused
        self.complete = 0
        self.first: float | None = None
        self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()
        self.extra = 0  # frames other than message/joined (presence, welcome, pings)

    def on_text(self, client: Client, payload: bytearray, now: float) -> None:
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "message":
            if client.paused:
                client.received += 1
                return
            sent = frame["data"]["t"]
            self.latencies.append(now - sent)
            self.sent_at.append(sent)
            client.received += 1
            if self.first is None:
                self.first = now
            self.last = now
            if client.received == self.expect:
                self.complete += 1
                if self.complete == self.reading and not self.done.done():
                    self.done.set_result(None)
        elif kind == "joined":
            if not client.joined.done():
                client.joined.set_result(None)
        elif kind == "ping":
            client.send_json({"type": "pong"})
        else:
            self.extra += 1

    async def run(self) -> None:
        args = self.args
        stdin = await stdin_lines()
        clients = await connect_all(self, args.clients, "bench")
        paused = clients[: args.paused]
        for client in paused:
            client.paused = True
            client.pause_reading()
        if self.reading == 0 and not self.done.done():
            self.done.set_result(None)
        emit({"event": "ready", "clients": len(clients)})
        stop = asyncio.ensure_future(wait_for_line(stdin, "stop"))
        await asyncio.wait([stop, self.done], return_when=asyncio.FIRST_COMPLETED)
        if self.done.done():
            emit({"event": "done"})
        await stop
        # Paused subscribers read again: did the server close them meanwhile?
        for client in paused:
            with contextlib.suppress(Exception):
                client.resume_reading()
        if paused:
            await asyncio.wait([c.lost for c in paused], timeout=args.paused_wait)
        reading = clients[args.paused :]
        with open(args.out, "wb") as f:  # noqa: ASYNC230 - once, after the measurement
            self.latencies.tofile(f)
            self.sent_at.tofile(f)
        emit(
            {
                "event": "result",
                "received": sum(c.received for c in reading),
                "expected": self.expect * len(reading),
                "complete": self.complete,
                "reading": len(reading),
                "lost_connections": sum(1 for c in reading if c.lost.done()),
                "reading_close_codes": sorted({c.close_code for c in reading if c.close_code}),
                "first": self.first,
                "last": self.last,
                "extra_frames": self.extra,
                "paused": [
                    {
                        "received": c.received,
                        "closed": c.lost.done(),
                        "close_code": c.close_code,
                        "error": c.error,
                    }
                    for c in paused
                ],
            }
        )
        for client in clients:
            client.abort()


class Publisher:
    """The ``pub`` role: publish with a window of unacknowledged messages, or at a rate."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pad = "x" * args.size
        self.sent = 0
        self.acked = 0
        self.client: Client | None = None
        self.finished = asyncio.get_running_loop().create_future()
        self.last_ack = time.monotonic()

    def publish(self) -> None:
        seq = self.sent
        self.sent += 1
        data = {"seq": seq, "t": time.time(), "pad": self.pad}
        self.client.send_json(  # type: ignore[union-attr]
            {"type": "publish", "room": "bench", "data": data, "ref": seq}
        )

    def on_text(self, client: Client, payload: bytearray, now: float) -> None:
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "ack":
            self.acked += 1
            self.last_ack = time.monotonic()
            if self.args.window:
                if self.sent < self.args.count:
                    self.publish()
                elif self.acked >= self.args.count and not self.finished.done():
                    self.finished.set_result(None)
            elif self.acked >= self.args.count and not self.finished.done():
                self.finished.set_result(None)
        elif kind == "joined":
            if not client.joined.done():
                client.joined.set_result(None)
        elif kind == "ping":
            client.send_json({"type": "pong"})

    async def run(self) -> None:
        args = self.args
        stdin = await stdin_lines()
        [self.client] = await connect_all(self, 1, "bench")
        emit({"event": "ready"})
        await wait_for_line(stdin, "go")
        started = time.time()
        if args.window:
            for _ in range(min(args.window, args.count)):
                self.publish()
            # Bounded: a server that stops acknowledging ends the run after --stall s.
            while not self.finished.done():
                await asyncio.wait([self.finished], timeout=0.5)
                if time.monotonic() - self.last_ack > args.stall:
                    break
        else:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(args.count):
                delay = t0 + i / args.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.finished), 1.0)
        ended = time.time()
        emit(
            {
                "event": "result",
                "started": started,
                "ended": ended,
                "sent": self.sent,
                "acked": self.acked,
            }
        )
        # Stay until ``stop`` (or stdin closes) so the caller can still read this
        # process's CPU time at the end of its measured window.
        await wait_for_line(stdin, "stop")
        self.client.abort()


class Idle:
    """The ``idle`` role: hold N joined connections open until ``stop``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def on_text(self, client: Client, payload: bytearray, now: float) -> None:
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "joined" and not client.joined.done():
            client.joined.set_result(None)
        elif kind == "ping":
            client.send_json({"type": "pong"})

    async def run(self) -> None:
        args = self.args
        stdin = await stdin_lines()
        clients = await connect_all(self, args.clients, "idle")
        emit({"event": "ready", "clients": len(clients)})
        await wait_for_line(stdin, "stop")
        emit({"event": "result", "open": sum(1 for c in clients if not c.lost.done())})
        for client in clients:
            client.abort()


class Probe:
    """The ``probe`` role: what does the server's ``welcome`` say (e.g. ``"batch": true``)?"""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def on_text(self, client: Any, payload: bytearray, now: float) -> None:
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "welcome" and client.welcome is None:
            client.welcome = frame
        elif kind == "joined" and not client.joined.done():
            client.joined.set_result(None)

    async def run(self) -> None:
        [client] = await connect_all(self, 1, "probe")
        emit({"event": "probe", "welcome": client.welcome})
        client.abort()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["sub", "pub", "idle", "probe"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="c")
    parser.add_argument(
        "--client",
        choices=["picows", "raw"],
        default="picows" if PicowsClient is not None else "raw",
        help="picows (C frame parser; the default when installed) or raw (pure-Python parser)",
    )
    parser.add_argument(
        "--batch", action="store_true", help="connect with ?batch=1, split frames on newlines"
    )
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--expect", type=int, default=0, help="sub: messages per subscriber")
    parser.add_argument("--paused", type=int, default=0, help="sub: subscribers that stop reading")
    parser.add_argument("--paused-wait", type=float, default=3.0)
    parser.add_argument("--out", default=os.devnull, help="sub: latency file (float64)")
    parser.add_argument("--count", type=int, default=0, help="pub: messages to publish")
    parser.add_argument("--window", type=int, default=0, help="pub: unacknowledged publishes")
    parser.add_argument("--rate", type=float, default=0.0, help="pub: messages per second")
    parser.add_argument("--size", type=int, default=0, help="pub: padding bytes per message")
    parser.add_argument("--stall", type=float, default=10.0, help="pub: give up after s w/o ack")
    args = parser.parse_args()
    raise_fd_limit()
    role = {"sub": Subscribers, "pub": Publisher, "idle": Idle, "probe": Probe}[args.role]

    async def run() -> None:
        await role(args).run()

    uvloop.run(run())


if __name__ == "__main__":
    main()
