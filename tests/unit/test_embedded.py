"""The embedded hub's pieces without a server: the signal relay and the log handlers.

The servers themselves are in tests/integration/test_embedded_servers.py; here
the relay's order (drain first, then the server's handler), the second Ctrl-C,
the handlers it refuses, and the logging it borrows and gives back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import pytest

from wirehub.embedded import Embedding, ServerInfo
from wirehub.hub import Hub
from wirehub.settings import Settings
from wirehub.sigrelay import SignalRelay, loop_dispatched


async def nothing() -> None:
    pass


@pytest.fixture
def server_handlers():
    """Stand-ins for a server's SIGTERM/SIGINT handlers, restored after the test."""
    calls: list[int] = []

    def handle_exit(sig: int, frame: object) -> None:
        calls.append(sig)

    before = {sig: signal.signal(sig, handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield calls, handle_exit
    for sig, handler in before.items():
        signal.signal(sig, handler)


async def test_the_drain_runs_before_the_server_gets_its_signal(server_handlers):
    calls, handle_exit = server_handlers
    order: list[str] = []
    release = asyncio.Event()

    async def drain() -> None:
        order.append(f"drain, server saw {calls}")
        await release.wait()

    relay = SignalRelay(drain)
    assert relay.install() is None
    signal.raise_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert order == ["drain, server saw []"]
    signal.raise_signal(signal.SIGTERM)  # a relayed second SIGTERM is absorbed
    await asyncio.sleep(0.05)
    assert calls == []
    release.set()
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == [signal.SIGTERM]  # once, after the drain
    assert signal.getsignal(signal.SIGTERM) == handle_exit  # the server's handler is back
    assert signal.getsignal(signal.SIGINT) == handle_exit


async def test_a_second_ctrl_c_hands_both_signals_over_at_once(server_handlers):
    calls, handle_exit = server_handlers
    never = asyncio.Event()
    relay = SignalRelay(never.wait)
    assert relay.install() is None
    signal.raise_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    assert calls == []
    signal.raise_signal(signal.SIGINT)
    assert calls == [signal.SIGINT, signal.SIGINT]  # uvicorn: should_exit, then force_exit
    assert signal.getsignal(signal.SIGINT) == handle_exit
    await relay.close()


async def test_uninstall_gives_back_the_handlers_it_found(server_handlers):
    _calls, handle_exit = server_handlers
    relay = SignalRelay(nothing)
    assert relay.install() is None
    assert signal.getsignal(signal.SIGTERM) != handle_exit
    await relay.close()
    assert signal.getsignal(signal.SIGTERM) == handle_exit


async def test_a_handler_the_event_loop_dispatches_is_refused(server_handlers):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)
    try:
        assert loop_dispatched(signal.getsignal(signal.SIGTERM))
        reason = SignalRelay(nothing).install()
        assert reason == "the server's signal handlers run in its event loop"
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def test_off_the_main_thread_it_is_refused():
    reasons: list[str | None] = []

    def run() -> None:
        async def attempt() -> None:
            reasons.append(SignalRelay(nothing).install())

        asyncio.run(attempt())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert reasons == ["the server runs the app off the main thread"]


@contextlib.contextmanager
def unconfigured_logging() -> Iterator[logging.Handler]:
    """No handler on root or on wirehub, as under `uvicorn app:app` (pytest's own set aside).

    A context in the test's body: pytest adds its capture handler to the root
    logger for each phase, after the fixtures ran.
    """
    root, ours, server = (logging.getLogger(n) for n in ("", "wirehub", "uvicorn"))
    logging.getLogger("uvicorn.error")  # uvicorn makes it; its handler is on "uvicorn"
    saved = (root.handlers[:], ours.handlers[:], ours.level, server.handlers[:], server.level)
    handler = logging.StreamHandler()
    root.handlers, ours.handlers, server.handlers = [], [], [handler]
    ours.setLevel(logging.NOTSET)
    server.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.handlers, ours.handlers, server.handlers = saved[0], saved[1], saved[3]
        ours.setLevel(saved[2])
        server.setLevel(saved[4])


async def test_the_hub_borrows_the_servers_handler_and_gives_it_back():
    with unconfigured_logging() as handler:
        embedding = Embedding(Hub(Settings()))
        embedding._attach_logging(ServerInfo("uvicorn"))
        ours = logging.getLogger("wirehub")
        assert ours.handlers == [handler]  # uvicorn.error propagates to "uvicorn"'s handler
        assert ours.getEffectiveLevel() == logging.INFO
        await embedding.close()
        assert ours.handlers == [] and ours.level == logging.NOTSET


async def test_a_configured_logging_is_left_alone():
    with unconfigured_logging():
        logging.getLogger().addHandler(logging.NullHandler())
        embedding = Embedding(Hub(Settings()))
        embedding._attach_logging(ServerInfo("uvicorn"))
        assert logging.getLogger("wirehub").handlers == []
