"""Logger names and the logging config the CLI applies.

The library never installs handlers; only ``wirehub.cli`` calls :func:`configure`.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ConnectionLoggerAdapter", "configure", "get_logger"]


def get_logger(area: str) -> logging.Logger:
    return logging.getLogger(f"wirehub.{area}")


class ConnectionLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the peer's id so one grep follows one client."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[{extra.get('client_id', '?')}] {msg}", kwargs


def configure(level: str = "info") -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "default": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
            },
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "default"},
            },
            "loggers": {
                "wirehub": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
                "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
                "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            },
        }
    )
