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
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wirehub.envcheck import unknown_variables
from wirehub.errors import ConfigError
from wirehub.settings.auth import AuthSettings
from wirehub.settings.sections import (
    BridgeSettings,
    HeartbeatSettings,
    HistorySettings,
    JobsSettings,
    LimitsSettings,
    RedisSettings,
    RoomSettings,
    ServerSettings,
    ShutdownSettings,
    UploadsSettings,
)
from wirehub.settings.services import ReadySettings, RestartSettings, ServiceSettings

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
