"""The ``[[services]]`` sections: a supervised program, its readiness check and restart policy."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from wirehub.services.spec import DEFAULT_STOP_SIGNAL, parse_signal, split_command
from wirehub.settings.sections import _Section

__all__ = ["ReadySettings", "RestartSettings", "ServiceSettings"]


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
