"""The hub inside someone else's server: find the server, take what it can give, say the rest.

``FastAPI(lifespan=hub.lifespan)`` under ``uvicorn app:app``, ``uvicorn
--workers N``, gunicorn's uvicorn worker or granian gets none of what
``wirehub serve`` sets up around the hub (src/wirehub/server.py). When the hub
starts from its lifespan, :class:`Embedding` does what can be done from inside:

1. **Logging**: with no handler on the ``wirehub`` logger nor on the root
   logger (nobody configured logging), the hub's lines go to the server's
   handlers (``uvicorn.error``'s: gunicorn's under its worker; ``_granian``'s),
   at the server's level or ``server.log_level`` when it is set; they are
   detached when the hub stops. A user's own logging config is never touched.
2. **uvicorn's protocols**: the web layer hands uvicorn (found through the
   signal handler it installed) the classes ``wirehub serve`` uses: bounded
   request heads and control frames, the frame-once writer, ``server.ws``,
   ``ws_max_size`` and ``ws_per_message_deflate`` (src/wirehub/web/uvicorn_protocols/embed.py).
   Options given to uvicorn on its command line (``--ws``, ``--http``) win.
3. **Shutdown**: a :class:`~wirehub.sigrelay.SignalRelay` in front of the
   server's SIGTERM/SIGINT handlers: the hub closes its clients with ``1001 hub
   shutting down`` (after flushing them) and stops, then the server gets its
   signal and shuts down as it would have.
4. **One WARNING** naming the server and listing what is still not available
   under it, and the ``[server]`` settings it ignores (docs/deploy.md,
   "Embedded in your own app").

Nothing here runs under ``wirehub serve``: :class:`~wirehub.server.HubServer`
marks its hub :attr:`Embedding.served`.
"""

from __future__ import annotations

import logging
import signal
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wirehub.sigrelay import SignalRelay

if TYPE_CHECKING:
    from wirehub.hub import Hub

__all__ = ["Embedding", "ServerInfo", "detect_server", "embedding_for"]

logger = logging.getLogger("wirehub.embedded")

#: Loggers of the servers whose handlers the hub's lines may borrow, by server name.
SERVER_LOGGERS = {"granian": "_granian", "hypercorn": "hypercorn.error"}
#: ``[server]`` settings that only ``wirehub serve`` reads (the server's own options decide).
SERVE_ONLY = ("host", "port", "workers", "graceful_timeout", "gc_freeze")
#: What uvicorn's protocol classes carry (missing when they cannot be handed over).
HEAD_BOUNDS = (
    "request-head bounds (414/431/408: server.max_request_line, max_header_bytes, "
    "max_headers, handshake_timeout, handshake_idle_timeout)"
)
CONTROL_BOUNDS = "control-frame bounds (ping/pong rate, pongs to a peer that does not read)"
FRAME_ONCE = "the frame-once writer (server.ws = 'wirehub')"
#: The ``[server]`` settings those classes apply.
HEAD_SETTINGS = (
    "max_request_line",
    "max_header_bytes",
    "max_headers",
    "handshake_timeout",
    "handshake_idle_timeout",
)
WS_SETTINGS = ("ws", "ws_per_message_deflate")

#: Set by the web layer (src/wirehub/web/uvicorn_protocols/embed.py): hand a uvicorn
#: ``Config`` the hub's protocols; returns what it could not apply.
UvicornAdopter = Callable[[Any], list[str]]


@dataclass
class ServerInfo:
    """The server running this process's app, as far as it can be told from inside."""

    #: "uvicorn", "gunicorn (uvicorn worker)", "granian", "hypercorn", or "an unknown server".
    name: str
    #: The running ``uvicorn.Server``, when it is one (found through its signal handler).
    uvicorn: Any = None


def detect_server() -> ServerInfo:
    """Which server runs us: uvicorn's signal handler is a bound ``Server.handle_exit``."""
    server_module = sys.modules.get("uvicorn")  # its top level: uvicorn.Server
    handler = signal.getsignal(signal.SIGTERM)
    owner = getattr(handler, "__self__", None)
    if server_module is not None and isinstance(owner, server_module.Server):
        name = "gunicorn (uvicorn worker)" if "gunicorn.arbiter" in sys.modules else "uvicorn"
        return ServerInfo(name, owner)
    for name in ("granian", "hypercorn", "daphne"):
        if name in sys.modules:
            return ServerInfo(name)
    if server_module is not None:
        return ServerInfo("uvicorn (not found: running off the main thread?)")
    return ServerInfo("an unknown server")


class Embedding:
    """What one hub does about the server it is embedded in (one per hub)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = weakref.ref(hub)
        #: ``wirehub serve`` runs this hub: it sets everything up itself.
        self.served = False
        #: How to hand uvicorn the hub's protocols (set by the /ws endpoint).
        self.adopt_uvicorn: UvicornAdopter | None = None
        self.server: ServerInfo | None = None
        #: What is not available under this server (the WARNING's list).
        self.missing: list[str] = []
        self._relay: SignalRelay | None = None
        self._attached: list[logging.Handler] = []
        self._level: int | None = None

    @property
    def hub(self) -> Hub:
        hub = self._hub()
        assert hub is not None
        return hub

    # -- the lifespan's steps -----------------------------------------------------------

    def enter(self) -> None:
        """Before the hub starts: logging, the server's protocols, the signal relay, the WARNING."""
        if self.served:
            return
        info = self.server = detect_server()
        self._attach_logging(info)
        missing: list[str] = []
        ignored = self._set_server_fields(SERVE_ONLY)
        if info.uvicorn is not None and self.adopt_uvicorn is not None:
            missing += self.adopt_uvicorn(info.uvicorn.config)
            if HEAD_BOUNDS in missing:
                ignored += self._set_server_fields(HEAD_SETTINGS)
            if CONTROL_BOUNDS in missing:
                ignored += self._set_server_fields(WS_SETTINGS)
        else:
            missing += [HEAD_BOUNDS, CONTROL_BOUNDS, FRAME_ONCE]
            ignored += self._set_server_fields(HEAD_SETTINGS + WS_SETTINGS)
        self._relay = SignalRelay(self._drain)
        refused = self._relay.install()
        if refused is not None:
            self._relay = None
            missing.insert(0, f"clients closed with 1001 on shutdown ({refused})")
        if ignored:
            missing.append(f"[server] {', '.join(ignored)} (ignored: the server's options decide)")
        self.missing = missing
        if missing:
            logger.warning(
                "embedded in %s: not available here: %s; `wirehub serve` has them "
                "(docs/deploy.md, 'Embedded in your own app')",
                info.name,
                "; ".join(missing),
            )
        else:
            logger.info("embedded in %s: wirehub's protocols and shutdown order apply", info.name)

    async def close(self) -> None:
        """After the hub stopped: the server's handlers and logging as they were."""
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()
        self._detach_logging()

    async def _drain(self) -> None:
        """The relayed signal: what HubServer.shutdown does before uvicorn's."""
        hub = self.hub
        if hub._running and not hub._started_up:
            hub.interrupt_start()  # still starting: give up, the server is on its way out
            return
        await hub.stop()

    # -- helpers ------------------------------------------------------------------------

    def _set_server_fields(self, names: tuple[str, ...]) -> list[str]:
        """Those of ``names`` the settings set explicitly (TOML or WIREHUB_SERVER__*)."""
        given = self.hub.settings.server.model_fields_set
        return [n for n in names if n in given]

    def _attach_logging(self, info: ServerInfo) -> None:
        ours = logging.getLogger("wirehub")
        if ours.handlers or logging.getLogger().handlers:
            return  # someone configured logging: theirs decides
        name = SERVER_LOGGERS.get(info.name, "uvicorn.error")
        if name not in logging.Logger.manager.loggerDict:
            return
        source = logging.getLogger(name)
        holder: logging.Logger | None = source  # uvicorn's handler is on "uvicorn"
        while holder is not None and not holder.handlers and holder.propagate:
            holder = holder.parent
        if holder is None or not holder.handlers or holder is logging.getLogger():
            return
        self._attached = list(holder.handlers)
        for handler in self._attached:
            ours.addHandler(handler)
        self._level = ours.level
        server = self.hub.settings.server
        if "log_level" in server.model_fields_set:
            ours.setLevel(server.log_level.upper())
        elif ours.level == logging.NOTSET:
            ours.setLevel(source.getEffectiveLevel())

    def _detach_logging(self) -> None:
        if not self._attached:
            return
        ours = logging.getLogger("wirehub")
        for handler in self._attached:
            ours.removeHandler(handler)
        self._attached = []
        if self._level is not None:
            ours.setLevel(self._level)
            self._level = None


_embeddings: weakref.WeakKeyDictionary[Hub, Embedding] = weakref.WeakKeyDictionary()


def embedding_for(hub: Hub) -> Embedding:
    """The hub's :class:`Embedding` (made on first use)."""
    found = _embeddings.get(hub)
    if found is None:
        found = _embeddings[hub] = Embedding(hub)
    return found
