"""Hold the server's SIGTERM/SIGINT until the hub has said goodbye, then hand them on.

An embedded hub runs under a server that owns the process's signals. uvicorn
(alone, with ``--workers``, or as gunicorn's worker) answers SIGTERM by closing
every WebSocket with 1012 and only then runs the app's lifespan shutdown, so a
hub that waits for its lifespan would close nobody: its clients would see 1012
instead of ``1001 hub shutting down``, and their queues would be lost.

:class:`SignalRelay` sits in front of the server's handlers: it installs its
own (``signal.signal``, remembering what it found), and on the first signal
runs ``drain`` (the hub's stop: refuse new clients, flush, close with 1001,
stop the components); then it re-installs what it found and raises the same
signal again, so the server shuts down exactly as it would have, with nothing
left for it to drop. While ``drain`` runs:

- another SIGTERM is absorbed (a supervisor relaying a Ctrl-C that already
  reached us must not cut the drain short);
- another SIGINT (a second Ctrl-C) hands both signals on at once: the server
  gets what it takes for "quit now" (uvicorn's forced exit).

It only relays handlers that Python runs (a plain callable, ``SIG_DFL``,
``SIG_IGN``); a handler an event loop dispatches itself
(``loop.add_signal_handler``: granian, hypercorn) fires whatever Python's
handler does, so :meth:`install` refuses it and says why. Signals are only
the main thread's: off it, :meth:`install` refuses too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

__all__ = ["SignalRelay", "loop_dispatched"]

logger = logging.getLogger("wirehub.embedded")

#: The signals a server stops on.
SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | None


def loop_dispatched(handler: Handler) -> bool:
    """Whether ``handler`` is an event loop's stand-in (its real handler runs in the loop).

    asyncio installs ``_sighandler_noop`` and uvloop a bound ``__sighandler``
    of the loop; either way the loop reacts to the signal through its wakeup
    descriptor, not through the Python handler.
    """
    if getattr(handler, "__name__", "") == "_sighandler_noop":
        return True
    return isinstance(getattr(handler, "__self__", None), asyncio.AbstractEventLoop)


class SignalRelay:
    """Run ``drain`` on the first SIGTERM/SIGINT, then give the signal to whoever had it."""

    def __init__(self, drain: Callable[[], Awaitable[None]]) -> None:
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._originals: dict[int, Handler] = {}
        self._received: list[int] = []
        self._handed_over = False
        self._forced = False
        self._task: asyncio.Task[None] | None = None

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def install(self) -> str | None:
        """Install in front of the current handlers; why not, or None once installed."""
        if threading.current_thread() is not threading.main_thread():
            return "the server runs the app off the main thread"
        found = {sig: signal.getsignal(sig) for sig in SIGNALS}
        if any(loop_dispatched(h) for h in found.values()):
            return "the server's signal handlers run in its event loop"
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._originals[sig] = signal.signal(sig, self._on_signal)
        return None

    def uninstall(self) -> None:
        """Re-install what :meth:`install` found, where our handler is still the one in place."""
        originals, self._originals = self._originals, {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in originals.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, handler)

    async def close(self) -> None:
        """Uninstall; a drain under way is let finish, or cancelled after a second Ctrl-C."""
        self.uninstall()
        task = self._task
        if task is None or task is asyncio.current_task() or task.done():
            return
        if self._forced:
            task.cancel()  # the server is quitting now: so do we
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A Python signal handler: it runs in the main thread between two
        # bytecodes, so it only schedules the drain in the loop.
        if self._received:
            if sig == signal.SIGINT:
                logger.info("second interrupt: handing shutdown to the server now")
                self._forced = True
                self._hand_over([*self._received, sig])
            return
        self._received.append(sig)
        loop = self._loop
        if loop is None or loop.is_closed():
            self._hand_over(self._received)
            return
        loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        assert self._loop is not None
        self._task = self._loop.create_task(self._run(), name="wirehub-signal-drain")

    async def _run(self) -> None:
        try:
            await self._drain()
        except Exception:
            name = signal.Signals(self._received[0]).name
            logger.exception("stopping the hub on %s failed", name)
        finally:
            self._hand_over(self._received)

    def _hand_over(self, signals: list[int]) -> None:
        """Give the server its handlers back, then the signals it missed."""
        if self._handed_over:
            return
        self._handed_over = True
        self.uninstall()
        for sig in signals:
            # Runs the handler now (raise_signal checks for signals before it
            # returns): a callable is called, SIG_DFL does what it does.
            signal.raise_signal(sig)
