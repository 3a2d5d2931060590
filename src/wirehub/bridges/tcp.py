"""One TCP bridge: a listening port whose clients are members of a room.

Each accepted client becomes a :class:`~wirehub.core.connection.Connection`
with the id ``tcp:<bridge>:<host>:<port>`` and joins the bridge's room, so it
shows in presence and ``/api/clients`` like any WebSocket client:

- **TCP → room.** The reader cuts the stream into frames (``core.framing``),
  turns each into JSON data (:class:`~wirehub.bridges.codecs.Codec`) and
  publishes it with ``from`` = the client's id and no echo to itself. It
  yields to the event loop after every frame and reads at most one buffer at a
  time, so a flooding client is read only as fast as the hub delivers.
- **Room → TCP.** Frames queued to the connection (``message``, ``direct``,
  ``broadcast``) are turned back into bytes by :class:`TcpTransport`; the
  bytes are built once per publish on its
  :class:`~wirehub.core.outbound.Outbound` envelope (the JSON parsed once for
  every bridge), so N clients of a bridge encode a published message once.
  ``send`` awaits ``drain()``: a client that does not read fills its bounded
  queue and is closed as a slow consumer (4001).

Bad input is an ``error`` event in the ``$bridges`` room (and a counter and a
log line); only a length prefix over ``max_frame`` disconnects the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from wirehub.bridges.codecs import Codec, load_function
from wirehub.core.admission import PeerAdmission
from wirehub.core.connection import Connection
from wirehub.core.framing import FrameError, FramingName, make_framer
from wirehub.core.node import Node
from wirehub.core.outbound import Outbound
from wirehub.core.protocol import CloseCode
from wirehub.core.ratelimit import FrameLimiter
from wirehub.errors import ConfigError, WirehubError

__all__ = ["BRIDGES_ROOM", "BridgeConfig", "HubPort", "TcpBridge", "TcpTransport"]

logger = logging.getLogger("wirehub.bridges")

#: System room with bridge ``error`` and ``stats`` events.
BRIDGES_ROOM = "$bridges"
#: Bytes asked of the socket per read (``raw`` framing reads ``max_frame``).
READ_SIZE = 64 * 1024
#: Frame types written to TCP clients; everything else (presence, pings…) is not.
_DELIVERED = frozenset({"message", "direct", "broadcast"})


class HubPort(Protocol):
    """What a bridge needs from the hub (``wirehub.hub.Hub`` satisfies it)."""

    node: Node

    def new_connection(self, client_id: str, transport: Any, **meta: object) -> Connection: ...

    async def publish(
        self, room: str, data: Any, *, sender: str = ..., exclude: str | None = None
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Plain values for one bridge (``BridgeSettings`` maps onto it in the hub)."""

    name: str
    port: int
    room: str | None = None
    host: str = "127.0.0.1"
    framing: FramingName = "line"
    encoding: str = "utf-8"
    direction: str = "both"
    max_clients: int = 100
    idle_timeout: float = 0.0
    max_frame: int = 64 * 1024
    decoder: str | None = None
    encoder: str | None = None
    #: Client networks allowed to connect (CIDR; empty: any) and clients per address (0: any).
    allow_from: tuple[str, ...] | list[str] = ()
    max_clients_per_ip: int = 0
    #: Inbound frames per second per TCP client (0: no limit) and the bucket size.
    rate: float = 0.0
    burst: int = 100


class TcpTransport:
    """Connection transport over an asyncio StreamWriter, writing the bridge's framing."""

    kind = "tcp"
    __slots__ = ("_bridge", "_writer", "closing", "last_write")

    def __init__(self, bridge: TcpBridge, writer: asyncio.StreamWriter) -> None:
        self._bridge = bridge
        self._writer = writer
        self.closing = False
        self.last_write = time.monotonic()

    #: Frames go one by one through :meth:`send` (the bridge's codec may fail on one).
    coalesces = False

    def try_writelines(self, outs: list[Outbound]) -> bool:
        return False

    def try_write(self, out: Outbound) -> bool:
        """Decline: a TCP write goes through :meth:`send`, which reports codec errors."""
        return False

    async def send(self, frame: Outbound) -> None:
        bridge = self._bridge
        out = bridge.outbound(frame)
        if out is None:
            return
        if isinstance(out, WirehubError):
            await bridge.report(None, out.code, out.message)
            return
        self._writer.write(out)
        self.last_write = time.monotonic()
        bridge.frames_out += 1
        bridge.bytes_out += len(out)
        # Waits only while the socket buffer is over its high-water mark: a
        # client that does not read holds its writer here and its queue fills.
        await self._writer.drain()

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        if code == CloseCode.SLOW_CONSUMER:
            # Its socket buffer is full by definition: a polite close would wait.
            self.abort()
            return
        self._writer.close()
        await self._writer.wait_closed()

    def abort(self) -> None:
        self.closing = True
        self._writer.transport.abort()


class TcpBridge:
    """A listening port, its clients, and what they send and receive."""

    def __init__(self, hub: HubPort, config: BridgeConfig) -> None:
        self.hub = hub
        self.config = config
        self.name = config.name
        self.room = config.room or f"tcp:{config.name}"
        self.port = config.port
        self.receives = config.direction in ("out", "both")  # room → TCP
        self.sends = config.direction in ("in", "both")  # TCP → room
        self.clients: dict[str, Connection] = {}
        self.codec = Codec(encoding=config.encoding, json_lines=config.framing == "jsonl")
        self._wire = make_framer(config.framing, config.max_frame)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Counters (read by stats(); an addition per frame, nothing more).
        self.clients_total = 0
        self.rejected = 0
        self.admission = PeerAdmission(config.allow_from, max_per_address=config.max_clients_per_ip)
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.drops = 0
        self.errors: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<TcpBridge {self.name} {self.config.host}:{self.port} room={self.room}>"

    @property
    def listening(self) -> bool:
        """The port is open and accepting (``/readyz`` checks ``bridge:<name>``)."""
        return self._server is not None and self._server.is_serving()

    # -- lifecycle ------------------------------------------------------------------

    def load_codecs(self) -> None:
        """Import ``decoder`` / ``encoder``; ConfigError naming the bridge if one fails."""
        cfg = self.config
        decoder = encoder = None
        if cfg.decoder:
            decoder = load_function(cfg.decoder, what=f"bridge '{cfg.name}': decoder")
        if cfg.encoder:
            encoder = load_function(cfg.encoder, what=f"bridge '{cfg.name}': encoder")
        self.codec = Codec(
            encoding=cfg.encoding,
            json_lines=cfg.framing == "jsonl",
            decoder=decoder,
            encoder=encoder,
        )

    async def start(self) -> None:
        """Open the port; ConfigError naming the bridge and port if it cannot listen.

        With ``port = 0`` the system picks a free port; :attr:`port` tells which.
        """
        cfg = self.config
        self._closing = False
        try:
            self._server = await asyncio.start_server(
                self._on_client, cfg.host, cfg.port, limit=READ_SIZE
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            message = f"bridge '{cfg.name}' cannot listen on {cfg.host}:{cfg.port}: {reason}"
            logger.error("%s", message)
            raise ConfigError(message, bridge=cfg.name, port=cfg.port) from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info(
            "bridge %s listening on %s:%d (room %s, framing %s, direction %s)",
            cfg.name,
            cfg.host,
            self.port,
            self.room,
            cfg.framing,
            cfg.direction,
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every client; idempotent, bounded by ``timeout``."""
        if self._closing and self._server is None:
            return
        self._closing = True
        server, self._server = self._server, None
        # 1. Stop accepting (wait_closed comes last: on 3.12 it waits for handlers).
        if server is not None:
            server.close()
        # 2. Close every client politely (1001), each bounded by the close timeout.
        conns = list(self.clients.values())
        for conn in conns:
            self.hub.node.disconnect(conn, CloseCode.GOING_AWAY, "bridge closing")
        if conns:
            waiters = [asyncio.ensure_future(c.wait_closed()) for c in conns]
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for waiter in pending:
                waiter.cancel()
        # 3. Cancel the handler tasks still reading; they are ours to finish.
        handlers = [t for t in self._handlers if not t.done()]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=timeout)
        # 4. Now the server has no handlers left to wait for.
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout)
        logger.info(
            "bridge %s closed: %d clients closed, %d handlers cancelled, %d frames in, %d out",
            self.name,
            len(conns),
            len(handlers),
            self.frames_in,
            self.frames_out,
        )

    # -- stats ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters as JSON (``GET /api/bridges``, ``$bridges``): clients, frames, bytes…"""
        cfg = self.config
        return {
            "name": self.name,
            "host": cfg.host,
            "port": self.port,
            "room": self.room,
            "framing": cfg.framing,
            "encoding": cfg.encoding,
            "direction": cfg.direction,
            "listening": self.listening,
            "clients": len(self.clients),
            "max_clients": cfg.max_clients,
            "clients_total": self.clients_total,
            "rejected": self.rejected,
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "drops": self.drops,
            "errors": dict(self.errors),
        }

    # -- events ---------------------------------------------------------------------

    async def report(self, client_id: str | None, code: str, message: str) -> None:
        """Count, log and publish one ``error`` event to ``$bridges``."""
        self.errors[code] += 1
        logger.warning("bridge %s [%s] %s: %s", self.name, client_id or "-", code, message)
        await self.hub.publish(
            BRIDGES_ROOM,
            {
                "event": "error",
                "bridge": self.name,
                "client_id": client_id,
                "code": code,
                "message": message,
            },
        )

    # -- room → TCP -----------------------------------------------------------------

    def outbound(self, frame: Outbound) -> bytes | WirehubError | None:
        """TCP bytes for an encoded hub frame (None: not for TCP).

        Built once per envelope and bridge (every peer of this bridge in the
        room writes the same bytes); the JSON is parsed once per envelope for
        all bridges.
        """
        return frame.form(self, self._encode_outbound)

    def _encode_outbound(self, frame: Outbound) -> bytes | WirehubError | None:
        if not self.receives or isinstance(frame.text, bytes):
            return None  # direction "in", or a binary frame: nothing for TCP
        parsed = frame.parsed(orjson.loads)
        if parsed.get("type") not in _DELIVERED:
            return None
        try:
            payload = self.codec.encode(parsed.get("data"))
        except WirehubError as exc:
            self.drops += 1
            return exc
        if payload is None:
            self.drops += 1
            return None
        return self._wire.encode(payload)

    # -- TCP → room -----------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        peer = writer.get_extra_info("peername") or ("?", 0)
        host, port = str(peer[0]), int(peer[1])
        client_id = f"tcp:{self.name}:{host}:{port}"
        if self._closing:
            writer.transport.abort()
            return
        if len(self.clients) >= cfg.max_clients:
            self.rejected += 1
            writer.close()
            await self.report(
                client_id,
                "limit_exceeded",
                f"bridge '{self.name}' already has its maximum of {cfg.max_clients} clients",
            )
            return
        try:
            self.admission.admit(host)  # allow_from, max_clients_per_ip
        except WirehubError as exc:
            self.rejected += 1
            writer.close()
            await self.report(client_id, exc.code, exc.message)
            return
        node = self.hub.node
        transport = TcpTransport(self, writer)
        conn = self.hub.new_connection(
            client_id, transport, peer=f"{host}:{port}", bridge=self.name
        )
        if cfg.rate > 0:
            conn.meta["limiter"] = FrameLimiter(cfg.rate, cfg.burst)
        self.clients[client_id] = conn
        self.clients_total += 1
        node.connect(conn)
        logger.debug("bridge %s [%s] connected", self.name, client_id)
        try:
            node.rooms.join(conn, self.room)
            await self._read_loop(conn, reader, transport)
        except WirehubError as exc:  # e.g. the room is full
            await self.report(client_id, exc.code, exc.message)
            node.disconnect(conn, CloseCode.POLICY, exc.message)
        except (ConnectionError, OSError) as exc:
            logger.debug("bridge %s [%s] read failed: %r", self.name, client_id, exc)
        finally:
            self.admission.release(host)
            if self.clients.get(client_id) is conn:
                del self.clients[client_id]
            node.transport_lost(conn)
            if not transport.closing:
                writer.close()
            logger.debug("bridge %s [%s] disconnected", self.name, client_id)

    async def _read_loop(
        self, conn: Connection, reader: asyncio.StreamReader, transport: TcpTransport
    ) -> None:
        cfg = self.config
        framer = make_framer(cfg.framing, cfg.max_frame)
        read_size = cfg.max_frame if cfg.framing == "raw" else READ_SIZE
        idle = cfg.idle_timeout
        last_read = time.monotonic()
        while conn.open:
            if idle > 0:
                try:
                    async with asyncio.timeout(idle):
                        data = await reader.read(read_size)
                except TimeoutError:
                    now = time.monotonic()
                    if now - max(last_read, transport.last_write) < idle:
                        continue  # we wrote to it meanwhile: not idle
                    message = f"no traffic for {idle:g} s (idle_timeout)"
                    await self.report(conn.id, "idle_timeout", message)
                    self.hub.node.disconnect(conn, CloseCode.NORMAL, message)
                    return
                last_read = time.monotonic()
            else:
                data = await reader.read(read_size)
            if not data:
                await self._inbound(conn, framer.eof())
                return
            self.bytes_in += len(data)
            node = self.hub.node
            node.bytes_in += len(data)
            if not await self._inbound(conn, framer.feed(data)):
                return

    async def _inbound(self, conn: Connection, items: list[bytes | FrameError]) -> bool:
        """Publish each frame; False when the client must go (fatal framing error)."""
        hub = self.hub
        room = self.room
        codec = self.codec
        for item in items:
            if not conn.open:
                return False
            if isinstance(item, FrameError):
                await self.report(conn.id, item.code, item.message)
                if item.fatal:
                    hub.node.disconnect(conn, CloseCode.POLICY, item.message)
                    return False
                continue
            self.frames_in += 1
            conn.frames_in += 1
            hub.node.frames_in += 1
            limiter = conn.meta.get("limiter")
            if isinstance(limiter, FrameLimiter) and not limiter.allow():
                # Over [[bridges]] rate: dropped (counted); persistent abuse closes it.
                self.drops += 1
                if limiter.abusive:
                    message = "too many frames over the rate limit"
                    await self.report(conn.id, "rate_limited", message)
                    hub.node.disconnect(conn, CloseCode.RATE_LIMITED, message)
                    return False
                continue
            if not self.sends:
                self.drops += 1  # direction "out": TCP input is discarded
                continue
            try:
                data = codec.decode(item)
            except WirehubError as exc:
                await self.report(conn.id, exc.code, exc.message)
                continue
            if data is None:
                self.drops += 1
                continue
            try:
                await hub.publish(room, data, sender=conn.id, exclude=conn.id)
            except WirehubError as exc:  # a typed room's model refused it: that frame only
                await self.report(conn.id, exc.code, exc.message)
                continue
            # Give the writers a turn before the next frame: the sender is read
            # only as fast as the hub delivers.
            await asyncio.sleep(0)
        return True
