"""wirehub: a real-time hub for FastAPI.

Everything is a member of a room: WebSocket clients, TCP devices, jobs and
services publish into rooms, and every member receives what is published.
"""

from wirehub.core.connection import Connection
from wirehub.core.protocol import CloseCode
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
from wirehub.hub import Hub
from wirehub.jobs import JobContext, job
from wirehub.settings import Settings, load_settings

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


def __getattr__(name: str) -> object:
    # create_app pulls in FastAPI; import it only when asked for.
    if name == "create_app":
        from wirehub.web.app import create_app

        return create_app
    raise AttributeError(f"module 'wirehub' has no attribute {name!r}")
