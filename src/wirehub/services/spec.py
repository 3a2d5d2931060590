"""What to run and how to watch it: plain values, built from settings by the hub.

The supervisor never reads :mod:`wirehub.settings`; ``ServiceSpec.from_dict``
takes the ``model_dump()`` of a ``[[services]]`` entry (or any equal dict).

How a command string becomes an argv (:func:`split_command`) and a signal name a
number (:func:`parse_signal`) is decided here once: the ``[[services]]``
validators in :mod:`wirehub.settings` call the same two functions, so a service
given in a config file and one built in code run the same program and fail with
the same message.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_STOP_SIGNAL",
    "ReadyCheck",
    "RestartPolicy",
    "ServiceSpec",
    "parse_signal",
    "split_command",
    "start_order",
]

#: What stops a service unless ``stop_signal`` says otherwise (then SIGKILL after
#: ``stop_timeout``).
DEFAULT_STOP_SIGNAL = "SIGTERM"


def split_command(command: str | Iterable[str], shell: bool = False) -> list[str]:
    """The argv of ``command``: a string is split like a shell would (``shlex``),
    or kept whole for ``/bin/sh -c`` with ``shell``; a list is taken as it is."""
    if isinstance(command, str):
        return [command] if shell else shlex.split(command)
    return list(command)


def parse_signal(value: str | int) -> signal.Signals:
    """``"SIGTERM"``, ``"term"`` or ``15`` as a signal; ValueError names a bad one."""
    if not isinstance(value, str):
        try:
            return signal.Signals(value)
        except ValueError:
            raise ValueError(f"stop_signal: unknown signal {value!r}") from None
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    found = signal.Signals.__members__.get(name)
    if found is None:
        raise ValueError(f"stop_signal: unknown signal {value!r}")
    return found


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    """At most one of: a regex on output lines, a TCP ``host:port``, an HTTP URL."""

    log: str | None = None
    tcp: str | None = None
    http: str | None = None

    @property
    def kind(self) -> Literal["log", "tcp", "http", "none"]:
        if self.log is not None:
            return "log"
        if self.tcp is not None:
            return "tcp"
        if self.http is not None:
            return "http"
        return "none"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    #: ``no``, ``on-failure`` (non-zero exit, not ready in time) or ``always``.
    policy: Literal["no", "on-failure", "always"] = "no"
    #: First backoff delay and its cap, in seconds (jittered, doubling).
    initial: float = 0.5
    cap: float = 30.0
    #: A run that stayed ready this long resets the backoff delay.
    reset_after: float = 60.0
    #: More than ``max_restarts`` restarts within ``window`` seconds: ``failed``.
    max_restarts: int = 5
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    command: tuple[str, ...]
    shell: bool = False
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready: ReadyCheck = ReadyCheck()
    ready_timeout: float = 30.0
    required: bool = True
    depends_on: tuple[str, ...] = ()
    stop_signal: int = parse_signal(DEFAULT_STOP_SIGNAL)
    stop_timeout: float = 10.0
    restart: RestartPolicy = RestartPolicy()
    base_url: str | None = None
    log_lines: int = 1000
    max_line: int = 64 * 1024

    @property
    def argv(self) -> list[str]:
        """What is executed: the argv, or ``/bin/sh -c <command>`` with ``shell``."""
        if self.shell:
            script = self.command[0] if len(self.command) == 1 else shlex.join(self.command)
            return ["/bin/sh", "-c", script]
        return list(self.command)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceSpec:
        values = dict(data)
        command = split_command(values.pop("command"), bool(values.get("shell", False)))
        stop = parse_signal(values.pop("stop_signal", DEFAULT_STOP_SIGNAL))
        ready = values.pop("ready", None) or {}
        restart = values.pop("restart", None) or {}
        return cls(
            command=tuple(command),
            stop_signal=int(stop),
            ready=ready if isinstance(ready, ReadyCheck) else ReadyCheck(**ready),
            restart=restart if isinstance(restart, RestartPolicy) else RestartPolicy(**restart),
            depends_on=tuple(values.pop("depends_on", ())),
            env=dict(values.pop("env", None) or {}),
            **values,
        )


def start_order(specs: Iterable[ServiceSpec]) -> list[ServiceSpec]:
    """Dependencies first (stable: config order among equals); ValueError on cycles."""
    by_name = {s.name: s for s in specs}
    order: list[ServiceSpec] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError("services: depends_on cycle " + " -> ".join((*path, name)))
        if name not in by_name:
            raise ValueError(f"services: '{path[-1]}' depends on unknown service '{name}'")
        state[name] = 1
        for dep in by_name[name].depends_on:
            visit(dep, (*path, name))
        state[name] = 2
        order.append(by_name[name])

    for name in by_name:
        visit(name, ())
    return order
