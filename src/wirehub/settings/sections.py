"""The sections of the settings that configure the hub's own parts.

Each is a frozen pydantic model; :class:`wirehub.settings.Settings` composes them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BridgeSettings",
    "HeartbeatSettings",
    "HistorySettings",
    "JobsSettings",
    "LimitsSettings",
    "RedisSettings",
    "RoomSettings",
    "ServerSettings",
    "ShutdownSettings",
    "UploadsSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: WebSocket implementation (web/uvicorn_protocols.py): "wirehub" is uvicorn's
    #: websockets-sansio, bounded, plus a frame-once writer for fan-out; "auto" is
    #: "wirehub"; "websockets-sansio" the bounded class without the writer;
    #: "websockets" (legacy) and "wsproto" are uvicorn's own.
    ws: Literal["wirehub", "auto", "websockets", "websockets-sansio", "wsproto"] = "wirehub"
    #: Request head bounds, checked as bytes arrive (414 / 431 beyond): the
    #: request line, all header lines together (bytes), header lines (count).
    #: The defaults let a 32 KiB token through in the query or a header.
    max_request_line: int = Field(64 * 1024, ge=1024)
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    max_headers: int = Field(100, ge=8)
    #: Seconds for a whole request head, and between its reads (408 and close).
    handshake_timeout: float = Field(10.0, gt=0)
    handshake_idle_timeout: float = Field(5.0, gt=0)

    #: permessage-deflate costs one compression per delivery: off by default.
    ws_per_message_deflate: bool = False
    #: Hard cap enforced by the WebSocket layer (close 1009 beyond). Frames
    #: between ``limits.max_frame`` and this get an ``error too_large`` instead.
    ws_max_size: int = Field(1024 * 1024 + 4096, ge=1024)
    #: Seconds uvicorn waits for connections to finish on shutdown.
    graceful_timeout: float = Field(10.0, gt=0)
    #: ``wirehub serve`` only: once the hub is up, collect once and ``gc.freeze()``
    #: what is alive, so that later full collections (each a pause of the whole
    #: loop) walk only the connections, not every imported module (core/gcwatch.py).
    gc_freeze: bool = True
    #: ``wirehub serve`` processes on the one port (``--workers``), sharing rooms,
    #: presence, history and direct messages through Redis: ``redis_url``, or a
    #: private ``redis-server`` the hub starts when it is unset (src/wirehub/workers.py).
    workers: int = Field(1, ge=1, le=256)

    @field_validator("ws")
    @classmethod
    def _check_ws(cls, ws: str) -> str:
        # An implementation whose package is missing fails here, at load, not
        # with a traceback when uvicorn imports it.
        if ws == "wsproto" and importlib.util.find_spec("wsproto") is None:
            raise ValueError("'wsproto' needs the wsproto package (pip install wsproto)")
        return ws


class LimitsSettings(_Section):
    #: Largest inbound text frame handled (bytes); bigger ones get ``too_large``.
    max_frame: int = Field(64 * 1024, ge=256)
    #: Outbound queue bound per connection, in frames and in bytes.
    queue_max_messages: int = Field(1024, ge=1)
    queue_max_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    #: A peer that has not taken a frame for this many seconds while more wait
    #: for it is a slow consumer too (bytes and frames measure backlog, not lag).
    queue_max_lag: float = Field(5.0, gt=0)

    max_rooms_per_connection: int = Field(100, ge=1)
    max_rooms: int = Field(100_000, ge=1)
    #: WebSocket clients must join a room before publishing to it.
    publish_requires_join: bool = True
    #: Batched frames (``/ws?batch=1``, docs/protocol.md): at most this many
    #: messages (0 or 1: batching off, ``welcome`` does not offer it) and about
    #: this many payload bytes share one text frame.
    batch_max_messages: int = Field(16, ge=0, le=1024)
    batch_max_bytes: int = Field(64 * 1024, ge=1024)
    #: Seconds a polite close may take before the socket is dropped.
    close_timeout: float = Field(2.0, gt=0)
    #: Inbound frames per second per WebSocket connection (token bucket; 0: no limit).
    #: A frame over the rate gets ``error rate_limited`` and is dropped.
    rate: float = Field(1000.0, ge=0)
    #: Frames a connection may send at once above ``rate`` (the bucket size).
    burst: int = Field(2000, ge=1)
    #: This many rate-limited frames within ``abuse_window`` seconds close the
    #: connection with 4029 (0: never close, only reject).
    abuse_limit: int = Field(100, ge=0)
    abuse_window: float = Field(10.0, gt=0)
    #: Open WebSocket connections per client IP address (0: no limit); more get HTTP 429.
    max_connections_per_ip: int = Field(1000, ge=0)
    #: ``job.submit`` frames per minute per client id (0: no limit); more get ``rate_limited``.
    job_submits_per_minute: int = Field(600, ge=0)
    #: Inbound bytes per second per WebSocket connection, text and binary frames
    #: (token bucket; 0: no limit). Over it: ``error rate_limited``, and the same
    #: abuse path (4029) as ``rate``.
    bytes_rate: float = Field(16 * 1024 * 1024, ge=0)
    #: Bytes a connection may send at once above ``bytes_rate``; must hold the
    #: largest frame (an upload chunk, up to 1 MiB).
    bytes_burst: int = Field(32 * 1024 * 1024, ge=1024)
    #: Seconds a publish's ``idempotency_key`` is remembered per room: a repeat
    #: within it is not delivered again and answers the first offset.
    idempotency_window: float = Field(300.0, gt=0)
    #: Keys one process remembers at most (oldest forgotten first; memory broker,
    #: and a Redis node while Redis is out of reach).
    idempotency_max_keys: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _check_bytes(self) -> LimitsSettings:
        if self.bytes_rate > 0 and self.bytes_burst < self.max_frame:
            raise ValueError(
                f"bytes_burst ({self.bytes_burst}) must be at least max_frame ({self.max_frame})"
            )
        return self


class HeartbeatSettings(_Section):
    #: The hub sends ``ping`` to a client silent for this long (0 turns it off).
    interval: float = Field(20.0, ge=0)
    #: ...and closes it (4002) if nothing arrives within this many seconds more.
    timeout: float = Field(20.0, gt=0)


class HistorySettings(_Section):
    size: int = Field(1000, ge=0)
    ttl: float = Field(3600.0, gt=0)


class RoomSettings(_Section):
    """A ``[[rooms]]`` entry: policy for the rooms whose name matches ``pattern``."""

    pattern: str
    presence_events: bool | None = None
    presence_limit: int = Field(100, ge=0)
    history_size: int | None = Field(None, ge=0)
    history_ttl: float | None = Field(None, gt=0)
    max_members: int = Field(10_000, ge=1)
    #: ``"package.module:Model"``: the pydantic model every publish's ``data`` into
    #: these rooms must fit (wirehub.typed); imported here, so a bad one fails the load.
    model: str | None = None

    @field_validator("model")
    @classmethod
    def _check_model(cls, model: str | None) -> str | None:
        if model is not None:
            from wirehub.typed import import_model  # the user's module, imported once

            import_model(model)
        return model


class BridgeSettings(_Section):
    """A ``[[bridges]]`` entry: one TCP port whose clients are members of ``room``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    host: str = "127.0.0.1"
    #: 0 picks a free port (shown by ``/api/bridges``).
    port: int = Field(ge=0, le=65535)
    #: The room TCP clients join; defaults to ``tcp:<name>``.
    room: str | None = Field(None, pattern=r"^[^\s$\x00-\x1f\x7f][^\s\x00-\x1f\x7f]{0,199}$")
    framing: Literal["line", "length", "raw", "jsonl"] = "line"
    encoding: Literal["utf-8", "base64"] = "utf-8"
    #: ``in``: TCP to room only; ``out``: room to TCP only; ``both``.
    direction: Literal["in", "out", "both"] = "both"
    max_clients: int = Field(100, ge=1)
    #: Seconds without traffic either way before a TCP client is closed (0: never).
    idle_timeout: float = Field(0.0, ge=0)
    #: Largest TCP frame (line, length-prefixed body or raw read), in bytes.
    max_frame: int = Field(64 * 1024, ge=16, le=16 * 1024 * 1024)
    #: ``"module:function"`` turning a frame's bytes into JSON data.
    decoder: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    #: ``"module:function"`` turning JSON data into a frame's bytes.
    encoder: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    #: Client networks allowed to connect, as CIDRs (``["10.0.0.0/8", "::1"]``); empty: any.
    allow_from: list[str] = []
    #: TCP clients at once from one source address (0: only ``max_clients`` applies).
    max_clients_per_ip: int = Field(0, ge=0)
    #: Inbound frames per second per TCP client (0: no limit); extra frames are dropped
    #: and counted, 100 of them within 10 s close the client.
    rate: float = Field(0.0, ge=0)
    burst: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _check(self) -> BridgeSettings:
        if self.framing == "jsonl" and self.encoding != "utf-8":
            raise ValueError("framing 'jsonl' is JSON text: encoding must be 'utf-8'")
        for cidr in self.allow_from:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"allow_from: {cidr!r} is not a CIDR like 10.0.0.0/8") from None
        return self


class JobsSettings(_Section):
    """``[jobs]``: where jobs run and how long their results stay."""

    #: ``local``: in the hub process; ``celery``: on ``wirehub worker`` processes (needs redis_url).
    runner: Literal["local", "celery"] = "local"
    #: Modules imported at start (hub and workers) so their ``@job`` functions register.
    modules: list[str] = []
    #: Jobs running at once in the embedded runner.
    concurrency: int = Field(4, ge=1, le=1024)
    #: Seconds a finished job's record and result are kept.
    result_ttl: float = Field(3600.0, gt=0)
    #: Seconds a cancelled job may take to return before a hard stop.
    cancel_grace: float = Field(5.0, ge=0)
    #: Celery queue name (runner = "celery").
    queue: str = Field("wirehub", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    #: Celery pool of ``wirehub worker``: ``solo`` (one job at a time) or ``prefork``.
    worker_pool: Literal["solo", "prefork", "threads"] = "solo"
    #: Jobs per worker process for the prefork/threads pools.
    worker_concurrency: int = Field(1, ge=1, le=256)
    #: A worker refreshes a lease on each running job; one silent this long is lost.
    worker_lease: float = Field(5.0, gt=0)
    #: Celery broker visibility timeout: must exceed the longest job.
    visibility_timeout: float = Field(3600.0, gt=0)


class UploadsSettings(_Section):
    """``[uploads]``: chunked uploads over WebSocket."""

    #: Spool directory (shared with the workers when runner = "celery"); default: a temp dir.
    dir: str | None = None
    #: Largest upload, in bytes.
    max_size: int = Field(1024 * 1024 * 1024, ge=1)
    #: Largest binary chunk, in bytes (at most 1 MiB; the WebSocket frame cap allows it).
    chunk_size: int = Field(1024 * 1024, ge=1024, le=1024 * 1024)
    #: Unfinished uploads one connection may have at once.
    max_concurrent: int = Field(4, ge=1)
    #: Seconds before an unfinished upload (and its partial file) is deleted.
    expire_after: float = Field(3600.0, gt=0)
    #: Seconds a finished upload's file is kept for its job.
    keep_after: float = Field(3600.0, gt=0)


class RedisSettings(_Section):
    """``[redis]``: the distributed mode (several hub nodes behind one Redis)."""

    #: Same as the top-level ``redis_url`` (``WIREHUB_REDIS_URL``); give one of them.
    url: str | None = None
    #: Every key and channel starts with this (two hubs can share one Redis).
    prefix: str = Field("wirehub", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    #: Seconds between this node's heartbeats (and its sweep for dead nodes).
    node_heartbeat: float = Field(2.0, gt=0)
    #: A node silent this long is dead: its members are removed, ``leave`` events sent.
    node_ttl: float = Field(10.0, gt=0)
    #: Seconds a message waits for a missing earlier offset before it is read from the stream.
    gap_timeout: float = Field(1.0, gt=0)
    #: Timeout of one Redis operation (connect, command, subscribe), in seconds.
    op_timeout: float = Field(5.0, gt=0)
    #: Longest wait between reconnection attempts (jittered exponential backoff).
    reconnect_cap: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RedisSettings:
        if self.node_ttl <= self.node_heartbeat:
            raise ValueError("node_ttl must be longer than node_heartbeat")
        return self


class ShutdownSettings(_Section):
    #: Seconds to flush queued frames to clients before closing them with 1001.
    drain_timeout: float = Field(5.0, ge=0)
    #: ``[min, max]`` seconds: before 1001 every client is told to wait a random
    #: delay in this window before reconnecting (no reconnect storm on a deploy).
    reconnect_window: tuple[float, float] = (1.0, 5.0)

    @model_validator(mode="after")
    def _check_window(self) -> ShutdownSettings:
        low, high = self.reconnect_window
        if low < 0 or high < low:
            raise ValueError("reconnect_window: expected [min, max] with 0 <= min <= max")
        return self
