"""``wirehub asyncapi``: the document of an app's hub, without serving it.

``--app module:attr`` imports the app the way uvicorn does (the current
directory first on ``sys.path``) and finds its hub: ``attr`` itself, the
``app.state.hub`` of :func:`wirehub.create_app`, or the one Hub among the
module's globals (an app that did ``app.include_router(hub.router)``).
``--config`` builds a hub from a settings file (its ``[[rooms]] model`` typed
rooms, no custom handlers). Nothing is started: importing the app registers
its handlers, which is all the document needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import orjson

from wirehub.errors import ConfigError
from wirehub.hub import Hub
from wirehub.settings import load_settings
from wirehub.web.asyncapi.document import document_for

__all__ = ["export", "find_hub"]


def export(app: str | None = None, config: Path | None = None) -> str:
    """The document as indented JSON text (with a final newline)."""
    if app is not None and config is not None:
        raise ConfigError("give --app or --config, not both")
    hub = find_hub(app) if app is not None else Hub(load_settings(config))
    return orjson.dumps(document_for(hub), option=orjson.OPT_INDENT_2).decode() + "\n"


def find_hub(spec: str) -> Hub:
    """The Hub behind ``"module:attr"`` (see the module docstring); ConfigError if none."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app: '{spec}' is not 'module:attr' (e.g. myapp.main:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app: cannot import '{module_name}': {exc}") from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--app: '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if isinstance(obj, Hub):
        return obj
    state_hub = getattr(getattr(obj, "state", None), "hub", None)
    if isinstance(state_hub, Hub):
        return state_hub
    hubs = {id(v): v for v in vars(module).values() if isinstance(v, Hub)}
    if len(hubs) == 1:
        return next(iter(hubs.values()))
    found = "several Hubs" if hubs else "no Hub"
    raise ConfigError(f"--app: {found} in '{module_name}'; name it: --app {module_name}:hub")
