"""Kept for ``web/ws.py``'s import: the code is :mod:`wirehub.web.uvicorn_protocols.embed`.

Not a documented import path. It imports nothing of uvicorn until ``adopt``
runs (an app under another server must not load uvicorn), and goes once
``web/ws.py`` imports the package's ``embed`` lazily itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["adopt"]


def adopt(hub: Hub, config: Any) -> list[str]:
    """:func:`wirehub.web.uvicorn_protocols.embed.adopt`, imported on first use."""
    from wirehub.web.uvicorn_protocols.embed import adopt as adopt_

    return adopt_(hub, config)
