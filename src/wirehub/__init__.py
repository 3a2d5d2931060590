"""wirehub: a real-time hub for FastAPI.

Everything is a member of a room: WebSocket clients, TCP devices, jobs and
services publish into rooms, and every member receives what is published.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wirehub.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    RateLimited,
    TooLarge,
    UnknownType,
    WirehubError,
)

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.protocol import CloseCode
    from wirehub.hub import Hub
    from wirehub.jobs import JobContext, job
    from wirehub.settings import Settings, load_settings
    from wirehub.web.app import create_app

__all__ = [
    "BadRequest",
    "CloseCode",
    "ConfigError",
    "Conflict",
    "Connection",
    "Forbidden",
    "Hub",
    "JobContext",
    "LimitExceeded",
    "NotFound",
    "RateLimited",
    "Settings",
    "TooLarge",
    "UnknownType",
    "WirehubError",
    "create_app",
    "job",
    "load_settings",
]

__version__ = "0.1.0"


#: Public names imported on first use (PEP 562), so that ``import wirehub.client``
#: (or ``wirehub.errors``) does not load the server: FastAPI, pydantic, jwt, metrics.
_LAZY = {
    "CloseCode": "wirehub.core.protocol",
    "Connection": "wirehub.core.connection",
    "Hub": "wirehub.hub",
    "JobContext": "wirehub.jobs",
    "Settings": "wirehub.settings",
    "create_app": "wirehub.web.app",
    "job": "wirehub.jobs",
    "load_settings": "wirehub.settings",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wirehub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
