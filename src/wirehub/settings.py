"""Typed settings: a TOML file, then ``WIREHUB_*`` environment variables.

The only module that knows the config format. Environment variables override
the file; nested keys use ``__`` (``WIREHUB_LIMITS__MAX_FRAME=131072``) and
``WIREHUB_REDIS_URL`` sets ``redis_url``. An invalid value fails at start with a
:class:`ConfigError` that names the key and what was expected.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wirehub.envcheck import unknown_variables
from wirehub.errors import ConfigError
from wirehub.services.spec import DEFAULT_STOP_SIGNAL, parse_signal, split_command

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

__all__ = [
    "AuthSettings",
    "BridgeSettings",
    "HeartbeatSettings",
    "HistorySettings",
    "JobsSettings",
    "LimitsSettings",
    "ReadySettings",
    "RedisSettings",
    "RestartSettings",
    "RoomSettings",
    "ServerSettings",
    "ServiceSettings",
    "Settings",
    "UploadsSettings",
    "load_settings",
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


class ReadySettings(_Section):
    """A service's ``ready``: at most one check (none: ready once started)."""

    #: A regex searched in every stdout and stderr line.
    log: str | None = None
    #: ``"host:port"`` that accepts a TCP connection.
    tcp: str | None = None
    #: A URL that answers ``GET`` with a 2xx status.
    http: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ReadySettings:
        given = [k for k in ("log", "tcp", "http") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of log, tcp, http (got {', '.join(given)})")
        if self.log is not None:
            try:
                re.compile(self.log)
            except re.error as exc:
                raise ValueError(f"log: not a valid regex: {exc}") from None
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"tcp: expected 'host:port' (got {self.tcp!r})")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise ValueError(f"http: expected an http:// or https:// URL (got {self.http!r})")
        return self


class RestartSettings(_Section):
    """A service's ``restart`` policy, with jittered exponential backoff."""

    policy: Literal["no", "on-failure", "always"] = "no"
    initial: float = Field(0.5, gt=0)
    cap: float = Field(30.0, gt=0)
    #: Seconds of readiness after which the backoff starts over.
    reset_after: float = Field(60.0, ge=0)
    #: More than this many restarts within ``window`` seconds: the service is ``failed``.
    max_restarts: int = Field(5, ge=0)
    window: float = Field(60.0, gt=0)


class ServiceSettings(_Section):
    """A ``[[services]]`` entry: an external program started and watched with the hub."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: An argv list; a string is split with shlex (or run by /bin/sh with ``shell``).
    command: list[str] = Field(min_length=1)
    shell: bool = False
    cwd: str | None = None
    #: Added to the hub's environment (``PYTHONUNBUFFERED=1`` is set unless given here).
    env: dict[str, str] = {}
    ready: ReadySettings = ReadySettings()
    ready_timeout: float = Field(30.0, gt=0)
    #: The hub is not ready (and does not start) until this service is ready.
    required: bool = True
    depends_on: list[str] = []
    stop_signal: str = DEFAULT_STOP_SIGNAL
    stop_timeout: float = Field(10.0, gt=0)
    restart: RestartSettings = RestartSettings()
    #: Where the service answers HTTP: gives ``hub.services[name].client``.
    base_url: str | None = None
    #: Output lines kept in memory for the API and failure messages.
    log_lines: int = Field(1000, ge=1)
    #: Longer output lines are split into pieces of this many bytes.
    max_line: int = Field(65536, ge=256)

    @model_validator(mode="before")
    @classmethod
    def _split_command(cls, data: Any) -> Any:
        # The same split as ServiceSpec.from_dict (services/spec.py decides it).
        if isinstance(data, dict) and isinstance(data.get("command"), str):
            data = {**data, "command": split_command(data["command"], bool(data.get("shell")))}
        return data

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        parse_signal(self.stop_signal)  # ValueError "stop_signal: unknown signal 'X'"
        if self.shell and len(self.command) != 1:
            raise ValueError("command: with shell = true give one string")
        return self


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


class AuthSettings(_Section):
    """``[auth]``: who may connect, what they may do, and where browsers may come from.

    ``secret`` and ``api_keys`` are read from the environment only
    (``WIREHUB_AUTH__SECRET``, ``WIREHUB_AUTH__API_KEYS='["k1","k2"]'``) and are
    :class:`SecretStr`: shown as ``**********`` wherever settings are printed.
    """

    #: ``none``: anyone may connect as any client id (demo, loopback); ``jwt``: a
    #: signed token is required at the WebSocket handshake and its ``sub`` is the client id.
    mode: Literal["none", "jwt"] = "none"
    #: Shared secret of the HS256/HS384/HS512 algorithms.
    secret: SecretStr | None = None
    #: Accepted JWT algorithms (never ``none``).
    algorithms: list[str] = Field(["HS256"], min_length=1)
    #: PEM public key for RS*/ES*/PS*/EdDSA tokens.
    public_key_file: str | None = None
    #: A JWKS document (``{"keys": [...]}``) for RS*/ES* tokens; the token's ``kid`` picks the key.
    jwks_file: str | None = None
    #: When set, tokens must carry this ``aud`` / ``iss``.
    audience: str | None = None
    issuer: str | None = None
    #: Seconds of clock skew tolerated on ``exp`` / ``nbf``.
    leeway: float = Field(0.0, ge=0)
    #: Tokens without ``exp`` are refused.
    require_exp: bool = True
    #: Seconds before a live connection's token expires that it gets ``token.expiring``.
    expiry_warning: float = Field(30.0, ge=0)
    #: Seconds after ``exp`` before an unrefreshed connection is closed (4401).
    expiry_grace: float = Field(1.0, ge=0)
    #: Seconds a revocation is kept when the token's own ``exp`` is not known
    #: (every revocation by ``sub``; a ``jti`` revoked without ``exp``).
    revoke_ttl: float = Field(24 * 3600.0, gt=0)
    #: Revocations kept in memory (the closest to expiry go first when full).
    max_revocations: int = Field(100_000, ge=1)
    #: Room patterns every authenticated client may join, publish to and read (fnmatch).
    default_rooms: list[str] = []
    #: Patterns added to every token's grant claims, by claim name (``rooms``, ``join``,
    #: ``publish``, ``history``, ``direct``, ``jobs``, ``upload``): e.g. ``{direct = ["*"]}``.
    default_grants: dict[str, list[str]] = {}
    #: Keys for the HTTP API (``Authorization: Bearer <key>``) and for trusted
    #: back-end WebSocket clients; each key acts as an admin.
    api_keys: list[SecretStr] = []
    #: ``"module:function"`` called as ``function(client, action, room) -> bool``; it
    #: replaces the token grants (``action`` is join, publish, history or presence).
    policy: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    #: Browser origins allowed to open a WebSocket (``Origin`` header); empty: any.
    #: ``"*"`` allows any; entries are fnmatch patterns like ``"https://*.example.com"``.
    allowed_origins: list[str] = []
    #: CORS for the HTTP API: origins allowed to call it from a browser (empty: no CORS headers).
    cors_origins: list[str] = []
    cors_allow_credentials: bool = False

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        algs = [a.upper() for a in self.algorithms]
        if "NONE" in algs:
            raise ValueError("algorithms: 'none' is never accepted")
        claims = ("rooms", "join", "publish", "history", "direct", "jobs", "upload")
        unknown = sorted(set(self.default_grants) - set(claims))
        if unknown:
            expected = ", ".join(claims)
            raise ValueError(f"default_grants: unknown claim {unknown[0]!r} (expected {expected})")
        if self.mode == "jwt":
            hmac = [a for a in algs if a.startswith("HS")]
            keyed = [a for a in algs if not a.startswith("HS")]
            if hmac and self.secret is None:
                raise ValueError(
                    f"mode = 'jwt' with {', '.join(hmac)} needs a secret "
                    "(set WIREHUB_AUTH__SECRET in the environment)"
                )
            if keyed and not (self.public_key_file or self.jwks_file):
                raise ValueError(
                    f"mode = 'jwt' with {', '.join(keyed)} needs public_key_file or jwks_file"
                )
            if self.secret is not None and len(self.secret.get_secret_value()) < 32:
                raise ValueError("secret: use at least 32 characters")
        return self

    @property
    def api_protected(self) -> bool:
        """The HTTP API needs a key or an admin token (auth on, or keys configured)."""
        return self.mode != "none" or bool(self.api_keys)


class Settings(BaseSettings):
    """Every setting of a hub, typed and frozen (docs/config.md lists each one).

    ``Settings()`` reads ``WIREHUB_*`` environment variables (nested keys with
    ``__``: ``WIREHUB_LIMITS__MAX_FRAME``); keyword arguments and sections as
    dicts work too: ``Settings(limits={"max_frame": 131072})``. An unknown key or
    variable is an error, never ignored. :func:`load_settings` adds a TOML file.
    """

    model_config = SettingsConfigDict(
        env_prefix="WIREHUB_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    limits: LimitsSettings = LimitsSettings()
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    history: HistorySettings = HistorySettings()
    rooms: list[RoomSettings] = []
    shutdown: ShutdownSettings = ShutdownSettings()
    #: TCP bridges: ``[[bridges]]`` entries.
    bridges: list[BridgeSettings] = []
    #: Seconds between ``$hub.stats`` snapshots (0 turns them off).
    stats_interval: float = Field(2.0, ge=0)
    #: ``create_app`` serves the dashboard at ``/``, the chat at ``/chat`` and their files.
    demo: bool = True
    #: ``hub.router`` serves those pages too (an app that includes it gets ``/`` and
    #: ``/chat``); it always serves the browser client ``/static/wirehub.js``.
    router_pages: bool = False
    #: Turns on the distributed mode (Redis broker); ``[redis] url`` is the same.
    redis_url: str | None = None
    redis: RedisSettings = RedisSettings()
    jobs: JobsSettings = JobsSettings()
    uploads: UploadsSettings = UploadsSettings()
    #: Supervised programs: ``[[services]]`` entries, started before anything else.
    services: list[ServiceSettings] = []
    #: Authentication, room grants, origins and CORS (docs/security.md).
    auth: AuthSettings = AuthSettings()

    @model_validator(mode="before")
    @classmethod
    def _redis_url_alias(cls, data: Any) -> Any:
        # ``[redis] url`` and ``redis_url`` name one setting: copy it across.
        if isinstance(data, dict) and isinstance(data.get("redis"), dict):
            url = data["redis"].get("url")
            top = data.get("redis_url")
            if url and top and url != top:
                raise ValueError("redis_url and redis.url differ: give one of them")
            if url and not top:
                data = {**data, "redis_url": url}
            elif top and not url:
                data = {**data, "redis": {**data["redis"], "url": top}}
        elif isinstance(data, dict) and data.get("redis_url"):
            data = {**data, "redis": {"url": data["redis_url"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        patterns = [r.pattern for r in self.rooms]
        if len(set(patterns)) != len(patterns):
            raise ValueError("rooms: each pattern may appear once")
        if self.jobs.runner == "celery" and not self.redis_url:
            raise ValueError("jobs.runner = 'celery' needs redis_url")
        names = [b.name for b in self.bridges]
        if len(set(names)) != len(names):
            raise ValueError("bridges: each name may appear once")
        ports = [(b.host, b.port) for b in self.bridges if b.port]
        if len(set(ports)) != len(ports):
            raise ValueError("bridges: two bridges listen on the same host and port")
        return self

    @model_validator(mode="after")
    def _check_services(self) -> Settings:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError("services: each name may appear once")
        deps = {s.name: s.depends_on for s in self.services}
        for service in self.services:
            for dep in service.depends_on:
                if dep not in deps:
                    raise ValueError(f"services: '{service.name}' depends on unknown '{dep}'")
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            if name in path:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise ValueError(f"services: depends_on cycle {cycle}")
            if name not in done:
                for dep in deps[name]:
                    visit(dep, [*path, name])
                done.add(name)

        for name in deps:
            visit(name, [])
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings hook: environment over arguments, unknown variables refused."""
        # A WIREHUB_* variable that names no setting is a typo: refuse it as an
        # unknown TOML key is refused, naming the variable (envcheck.NOT_SETTINGS
        # lists the few that tools read outside the settings).
        problems = unknown_variables(cls, os.environ)
        if problems:
            raise ConfigError(
                "invalid environment: WIREHUB_* variables must name a setting\n  "
                + "\n  ".join(problems)
            )
        # Environment beats the file (passed as init kwargs by load_settings).
        return env_settings, init_settings


def _describe(error: ErrorDetails) -> str:
    """One line: the key and the problem; the value only when it is one value.

    A check over a whole section (or across sections, at the top level) gets
    that section or the whole input as ``input``: echoing it buries the
    problem, so only scalars are shown. The checks' messages name their keys.
    """
    loc = error["loc"]
    key = ".".join(str(part) for part in loc)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    value = error.get("input")
    show = error["type"] not in ("missing", "extra_forbidden") and not isinstance(
        value, dict | list
    )
    if loc and loc[0] == "auth":
        show = False  # the input may hold the secret or API keys: never echo it
    line = f"{key}: {message}" if key else message
    line += f" (got {value!r})" if show else ""
    source = _env_source(loc)
    return f"{line} (from {source})" if source else line


def _env_source(loc: tuple[Any, ...]) -> str | None:
    """The environment variable a bad value came from, if any (it wins over the file)."""
    names = {name.upper(): name for name in os.environ}
    for end in range(len(loc), 0, -1):
        candidate = "WIREHUB_" + "__".join(str(part) for part in loc[:end]).upper()
        if candidate in names:
            return names[candidate]
    return None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (TOML) if given, apply env vars; raise ConfigError naming each bad key.

    ``overrides`` are top-level keys applied over the file (the environment still
    wins). Secrets (``auth.secret``, ``auth.api_keys``) are refused in the file:
    they come from the environment only.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        in_file = [k for k in ("secret", "api_keys") if k in (data.get("auth") or {})]
        if in_file:
            raise ConfigError(
                f"config file {file}: auth.{in_file[0]} must not be written in a file; "
                f"set WIREHUB_AUTH__{in_file[0].upper()} in the environment"
            )
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        source = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{source}:\n  " + "\n  ".join(lines)) from None
