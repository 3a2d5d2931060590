"""The logging config the CLI applies.

The library never installs handlers: every module logs to its own
``logging.getLogger("wirehub.<area>")`` (``wirehub.hub``, ``wirehub.node``,
``wirehub.heartbeat``...), per-connection lines start with ``[client_id]``,
and only ``wirehub.cli`` calls :func:`configure`.
"""

from __future__ import annotations

import logging.config

__all__ = ["configure"]


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
