"""Typed settings: a TOML file, then ``WIREHUB_*`` environment variables.

The only module that knows the config format. Environment variables override
the file; nested keys use ``__`` (``WIREHUB_LIMITS__MAX_FRAME=131072``) and
``WIREHUB_REDIS_URL`` sets ``redis_url``. An invalid value fails at start with a
:class:`ConfigError` that names the key and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wirehub.errors import ConfigError

__all__ = [
    "HeartbeatSettings",
    "HistorySettings",
    "LimitsSettings",
    "RoomSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: uvicorn WebSocket implementation.
    ws: Literal["auto", "websockets", "websockets-sansio", "wsproto"] = "websockets-sansio"
    #: permessage-deflate costs one compression per delivery: off by default.
    ws_per_message_deflate: bool = False
    #: Hard cap enforced by the WebSocket layer (close 1009 beyond). Frames
    #: between ``limits.max_frame`` and this get an ``error too_large`` instead.
    ws_max_size: int = Field(1024 * 1024 + 4096, ge=1024)
    #: Seconds uvicorn waits for connections to finish on shutdown.
    graceful_timeout: float = Field(10.0, gt=0)


class LimitsSettings(_Section):
    #: Largest inbound text frame handled (bytes); bigger ones get ``too_large``.
    max_frame: int = Field(64 * 1024, ge=256)
    #: Outbound queue bound per connection, in frames and in bytes.
    queue_max_messages: int = Field(1024, ge=1)
    queue_max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_rooms_per_connection: int = Field(100, ge=1)
    max_rooms: int = Field(100_000, ge=1)
    #: WebSocket clients must join a room before publishing to it.
    publish_requires_join: bool = True
    #: Seconds a polite close may take before the socket is dropped.
    close_timeout: float = Field(2.0, gt=0)


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


class ShutdownSettings(_Section):
    #: Seconds to flush queued frames to clients before closing them with 1001.
    drain_timeout: float = Field(5.0, ge=0)


class Settings(BaseSettings):
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
    #: Seconds between ``$hub.stats`` snapshots (0 turns them off).
    stats_interval: float = Field(2.0, ge=0)
    #: Serve the demo page at ``/``.
    demo: bool = True
    #: Turns on the distributed mode (Redis broker).
    redis_url: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        patterns = [r.pattern for r in self.rooms]
        if len(set(patterns)) != len(patterns):
            raise ValueError("rooms: each pattern may appear once")
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
        # Environment beats the file (passed as init kwargs by load_settings).
        return env_settings, init_settings


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    value = error.get("input")
    shown = "" if error["type"] in ("missing", "extra_forbidden") else f" (got {value!r})"
    return f"{key}: {message}{shown}"


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (TOML) if given, apply env vars; raise ConfigError naming each bad key."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        source = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{source}:\n  " + "\n  ".join(lines)) from None
