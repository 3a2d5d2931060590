"""The supervisor against real misbehaving programs (tests/programs/fake_service.py).

Each test runs a real subprocess in its own process group and checks what a
user would notice: the state, the exit code, the error text with the last
lines, the events, and that no process of the group is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support import FACTOR
from wirehub.services import (
    SERVICES_ROOM,
    Service,
    ServiceError,
    ServiceSpec,
    ServiceState,
    log_room,
)
from wirehub.services.logstream import LineSplitter

PROGRAM = str(Path(__file__).parent.parent / "programs" / "fake_service.py")
READY = "Server - Started"


def spec(name: str, mode: str, *args: str, **options: Any) -> ServiceSpec:
    options.setdefault("ready", {"log": READY})
    options.setdefault("ready_timeout", 5.0 * FACTOR)
    options.setdefault("stop_timeout", 2.0)
    return ServiceSpec.from_dict(
        {"name": name, "command": [sys.executable, PROGRAM, mode, *args], **options}
    )


class Recorder:
    """The publish callback: keeps every event, wakes waiters on each."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def __call__(self, room: str, data: Any) -> None:
        if room == SERVICES_ROOM:
            self.events.append(data)
        else:
            assert room == log_room(data["service"])
            self.lines.append(data)
        self.changed.set()

    def states(self) -> list[str]:
        return [e["state"] for e in self.events]

    async def reached(self, service: Any, state: Any, timeout: float = 5.0) -> None:
        """The service is in ``state`` and that transition's event has arrived too
        (events are published after the attribute changes)."""
        await self.until(
            lambda: (
                service.state is state
                and bool(self.events)
                and self.events[-1]["state"] == str(state)
            ),
            timeout,
        )

    async def until(self, check: Any, timeout: float = 5.0) -> None:

        deadline = time.monotonic() + timeout * FACTOR
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; states {self.states()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


async def group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Bounded poll until no process of the group is left (zombies included: init reaps
    orphans on its own schedule, up to ~2 s in some containers)."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process group {pgid} still has processes")
        await asyncio.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def run():
    """``service, rec = await run(spec)``: started; closed (and checked) at teardown."""
    made: list[Service] = []

    async def factory(s: ServiceSpec) -> tuple[Service, Recorder]:
        rec = Recorder()
        service = Service(s, publish=rec)
        made.append(service)
        await service.start()
        return service, rec

    yield factory
    for service in made:
        await service.close()
        assert service.pid is None


# -- start failures -------------------------------------------------------------------


async def test_command_not_found_fails_with_a_clear_message(run):
    service, rec = await run(
        ServiceSpec.from_dict({"name": "ghost", "command": "/nonexistent/bin/ghost --serve"})
    )
    with pytest.raises(ServiceError) as info:
        await service.wait_ready()
    text = str(info.value)
    assert "service 'ghost' is not ready" in text
    assert "cannot start '/nonexistent/bin/ghost'" in text and "No such file" in text
    await rec.reached(service, ServiceState.FAILED)
    assert rec.states() == ["starting", "failed"]
    assert service.pid is None and service.exit_code is None


async def test_exit_at_once_fails_at_once_with_the_last_lines(run):
    started = time.monotonic()
    service, rec = await run(spec("quitter", "exit", "4", ready_timeout=30))
    with pytest.raises(ServiceError) as info:
        await service.wait_ready()
    # Not after the 30 s ready_timeout: the exit ends the wait.
    assert time.monotonic() - started < 5 * FACTOR
    text = str(info.value)
    assert "exited with code 4 before it was ready" in text
    assert "[stderr] fatal: cannot open config" in text
    await rec.reached(service, ServiceState.EXITED)
    assert service.exit_code == 4
    assert rec.events[-1] == {
        "event": "state",
        "service": "quitter",
        "state": "exited",
        "pid": None,
        "exit_code": 4,
        "restarts": 0,
    }


async def test_never_ready_times_out_and_is_stopped(run):
    service, rec = await run(spec("mute", "never", ready_timeout=0.5))
    await rec.until(lambda: service.pid is not None)
    pgid = service.pid
    with pytest.raises(ServiceError) as info:
        await service.wait_ready()
    assert "service 'mute' is not ready: not ready within 0.5s" in str(info.value)
    assert "[stdout] booting" in str(info.value)
    await rec.reached(service, ServiceState.EXITED)
    assert rec.states() == ["starting", "stopping", "exited"]
    assert service.exit_code == 0  # it took SIGTERM politely
    await group_gone(pgid)


async def test_ready_line_on_stderr(run):
    service, _ = await run(spec("err", "ready", "--stderr"))
    await service.wait_ready()
    assert service.state is ServiceState.READY and service.ready_since is not None
    assert [(e.stream, e.line) for e in service.tail(1)] == [("stderr", READY)]


async def test_buffered_stdout_is_seen_thanks_to_pythonunbuffered(run):
    service, _ = await run(spec("buffered", "buffered"))
    await service.wait_ready()  # set by default in the child's environment
    # Without it the line sits in the child's buffer and readiness never comes.
    service, _ = await run(
        spec("buffered2", "buffered", env={"PYTHONUNBUFFERED": ""}, ready_timeout=0.5)
    )
    with pytest.raises(ServiceError, match=r"not ready within 0\.5s"):
        await service.wait_ready()


async def test_ready_by_tcp_and_http_probes(run):
    from support import unused_port

    port = unused_port()
    tcp, _ = await run(spec("tcp", "http", str(port), ready={"tcp": f"127.0.0.1:{port}"}))
    await tcp.wait_ready()
    await tcp.stop()
    port = unused_port()
    http, _ = await run(
        spec("web", "http", str(port), ready={"http": f"http://127.0.0.1:{port}/health"})
    )
    await http.wait_ready()
    assert any("GET /health" in e.line for e in http.tail())


# -- restarts ---------------------------------------------------------------------------


async def test_crash_after_ready_restarts_with_backoff(run):
    restart = {"policy": "on-failure", "initial": 0.05, "cap": 0.2, "max_restarts": 10}
    service, rec = await run(spec("crashy", "crash-after-ready", "0.2", restart=restart))
    await service.wait_ready()
    await rec.until(lambda: rec.states().count("ready") >= 2)
    states = rec.states()
    assert states[:6] == ["starting", "ready", "exited", "backoff", "starting", "ready"]
    exited = rec.events[2]
    assert exited["exit_code"] == 3 and exited["pid"] is None
    assert rec.events[3]["restarts"] == 1
    assert service.restarts >= 1
    assert any(e.line == "crashing" and e.stream == "stderr" for e in service.tail())


async def test_crash_loop_gives_up_and_is_failed(run):
    restart = {"policy": "always", "initial": 0.01, "cap": 0.02, "max_restarts": 2, "window": 30}
    service, rec = await run(spec("loop", "exit", "1", restart=restart))
    await rec.reached(service, ServiceState.FAILED)
    assert service.restarts == 2
    assert rec.states().count("starting") == 3
    assert service.last_error == "gave up after 2 restarts within 30s"
    assert rec.events[-1]["state"] == "failed" and rec.events[-1]["restarts"] == 2


async def test_clean_exit_is_not_restarted_on_failure_policy(run):
    service, rec = await run(
        spec("oneshot", "exit", "0", ready={}, restart={"policy": "on-failure", "initial": 0.01})
    )
    await rec.reached(service, ServiceState.EXITED)
    await asyncio.sleep(0.1)
    assert rec.states() == ["starting", "ready", "exited"] and service.restarts == 0


# -- stopping ---------------------------------------------------------------------------


async def test_graceful_stop_sends_sigterm_to_the_group(run):
    service, rec = await run(spec("polite", "ready"))
    await service.wait_ready()
    pgid = service.pid
    await service.stop()
    assert rec.states()[-2:] == ["stopping", "stopped"]
    assert service.exit_code == 0 and service.tail(1)[0].line == "stopping"
    await group_gone(pgid)


async def test_ignores_sigterm_is_killed_after_stop_timeout(run):
    service, _ = await run(spec("stubborn", "ignore-term", stop_timeout=0.3))
    await service.wait_ready()
    pgid = service.pid
    started = time.monotonic()
    await service.stop()
    assert time.monotonic() - started >= 0.3
    assert service.exit_code == -signal.SIGKILL
    assert service.state is ServiceState.STOPPED
    await group_gone(pgid)


async def test_child_that_would_be_orphaned_is_stopped_with_the_group(run):
    service, _ = await run(spec("parent", "spawn-child", stop_timeout=0.3))
    await service.wait_ready()
    pgid = service.pid
    child = int(next(e.line for e in service.tail() if e.line.startswith("child pid="))[10:])
    assert os.getpgid(child) == pgid
    await service.stop()
    await group_gone(pgid)
    assert not pid_alive(child)


async def test_shell_command_children_die_too(run):
    script = f"{sys.executable} {PROGRAM} never; echo unreachable"
    service, _ = await run(
        ServiceSpec.from_dict(
            {"name": "sh", "command": script, "shell": True, "ready": {"log": "booting"}}
        )
    )
    await service.wait_ready()
    pgid = service.pid
    await service.stop()
    await group_gone(pgid)


async def test_exit_is_seen_while_a_grandchild_holds_stdout(run):
    service, rec = await run(spec("leaky", "spawn-child", "--leader-exits", stop_timeout=0.3))
    await service.wait_ready()
    pgid = service.pid
    # The leader exits after 0.2 s; its child keeps the pipe open and ignores SIGTERM.
    await rec.reached(service, ServiceState.EXITED, timeout=3)
    assert service.exit_code == 7
    await group_gone(pgid)


# -- output -------------------------------------------------------------------------------


async def test_burst_of_100000_lines_keeps_the_service_and_the_ring(run):
    service, rec = await run(spec("chatty", "burst", "100000", log_lines=500))
    await service.wait_ready()
    await rec.until(lambda: bool(rec.lines) and rec.lines[-1]["line"] == "burst done", timeout=20)
    assert service.state is ServiceState.READY
    tail = [e.line for e in service.tail()]
    assert len(tail) == 500
    assert tail[-2:] == ["line 99999", "burst done"]
    assert service.logs.total == 100_003  # booting, ready line, 100 000, burst done
    # Every line is either published in order or counted as dropped.
    assert len(rec.lines) + service.lines_dropped == service.logs.total
    first = rec.lines[0]
    assert first["service"] == "chatty" and first["stream"] == "stdout"
    assert first["line"].startswith("booting")


async def test_one_mib_line_is_split_and_the_reader_goes_on(run):
    service, rec = await run(spec("wide", "bigline", str(1024 * 1024), max_line=65536))
    await service.wait_ready()
    await rec.until(lambda: any(e.line == "after" for e in service.tail()))
    lines = [e.line for e in service.tail()]
    pieces = [line for line in lines if line.startswith("x")]
    assert len(pieces) == 16 and all(len(p) == 65536 for p in pieces)
    assert "bad \ufffd\ufffd bytes" in lines
    assert service.state is ServiceState.READY


def test_line_splitter_bounds_lines_and_keeps_utf8_whole():
    splitter = LineSplitter(16)
    assert splitter.feed(b"abc\r\nde") == ["abc"]
    assert splitter.feed(b"f\n") == ["def"]
    # 20 bytes without newline: cut at 16 and keep the rest for the next feed.
    assert splitter.feed(b"0123456789abcdefghij") == ["0123456789abcdef"]
    assert splitter.feed(b"\n") == ["ghij"]
    # A 2-byte character across the cut point stays whole.
    lines = splitter.feed(("x" * 15 + "é\n").encode())
    assert lines == ["x" * 15, "é"]
    assert splitter.feed(b"end") == [] and splitter.flush() == ["end"]
    assert splitter.splits == 2
