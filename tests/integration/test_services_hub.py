"""Services inside a real hub: start order, failed start, /api/services, /readyz, rooms."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import FACTOR, unused_port
from wirehub.errors import ConfigError
from wirehub.hub import Hub
from wirehub.services import ServiceError, ServiceState
from wirehub.settings import load_settings

PROGRAM = str(Path(__file__).parent.parent / "programs" / "fake_service.py")
READY = "Server - Started"


def service(name: str, mode: str, *args: str, **options: Any) -> dict[str, Any]:
    options.setdefault("ready", {"log": READY})
    options.setdefault("ready_timeout", 5.0 * FACTOR)
    options.setdefault("stop_timeout", 2.0)
    return {"name": name, "command": [sys.executable, PROGRAM, mode, *args], **options}


async def group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Bounded poll until no process of the group is left (zombies included)."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process group {pgid} still has processes")
        await asyncio.sleep(0.02)


async def test_required_service_not_ready_fails_the_start_and_stops_the_others():
    settings = load_settings(
        None,
        stats_interval=0,
        services=[
            service("app", "never", depends_on=["db"], ready_timeout=0.5),
            service("db", "ready"),
        ],
    )
    hub = Hub(settings)
    with pytest.raises(ServiceError) as info:
        await hub.start()
    text = str(info.value)
    assert text.startswith("service 'app' is not ready: not ready within 0.5s; last output:")
    assert "[stdout] booting pid=" in text
    # db was started first (app depends on it) and is stopped again.
    db = hub.services["db"]
    assert db.state is ServiceState.STOPPED and db.pid is None
    assert db.exit_code == 0 and db.tail(1)[0].line == "stopping"
    assert not hub.accepting
    await hub.stop()


async def test_services_start_in_dependency_order_and_stop_in_reverse(caplog):
    caplog.set_level(logging.INFO, logger="wirehub.services")
    settings = load_settings(
        None,
        stats_interval=0,
        services=[
            service("front", "ready", depends_on=["api"]),
            service("api", "ready", depends_on=["db"]),
            service("db", "ready"),
            service("extra", "never", required=False),
        ],
    )
    hub = Hub(settings)
    await hub.start()
    try:
        assert list(hub.services) == ["db", "api", "front", "extra"]
        db, api, front = (hub.services[n] for n in ("db", "api", "front"))
        assert db.ready_since <= api.ready_since <= front.ready_since
        # A service that is not required does not hold the start.
        assert hub.services["extra"].state is ServiceState.STARTING
        assert hub.readiness()["service:front"] is True
        assert "service:extra" not in hub.readiness()
    finally:
        await hub.stop()
    stopped = [
        r.getMessage().split(":")[0].removeprefix("service ")
        for r in caplog.records
        if r.getMessage().split(": ", 1)[-1].startswith("stopped (")
    ]
    assert stopped == ["extra", "front", "api", "db"]


async def test_api_readyz_and_the_shared_client(hub_server):
    port = unused_port()
    web = service(
        "web",
        "http",
        str(port),
        ready={"http": f"http://127.0.0.1:{port}/health"},
        base_url=f"http://127.0.0.1:{port}",
    )
    running = await hub_server(services=[web], stats_interval=0)
    hub = running.hub
    async with httpx.AsyncClient(base_url=running.http) as http:
        listed = (await http.get("/api/services")).json()
        assert [(s["name"], s["state"]) for s in listed] == [("web", "ready")]
        one = (await http.get("/api/services/web")).json()
        assert one["pid"] > 0 and one["uptime"] >= 0 and one["ready_since"] > 0
        assert one["restarts"] == 0 and one["exit_code"] is None and one["required"] is True
        assert (await http.get("/readyz")).status_code == 200

        # A handler talks to the service through the hub's shared client.
        echo = (await hub.services["web"].client.get("/echo", params={"q": "hi"})).json()
        assert echo == {"echo": {"q": ["hi"]}, "pid": one["pid"]}

        stopped = await http.post("/api/services/web/stop")
        assert stopped.status_code == 200
        assert stopped.json()["state"] == "stopped" and stopped.json()["pid"] is None
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["service:web"] is False

        started = (await http.post("/api/services/web/start", params={"wait": "true"})).json()
        assert started["state"] == "ready" and started["pid"] not in (None, one["pid"])
        assert (await http.get("/readyz")).status_code == 200
        restarted = (await http.post("/api/services/web/restart", params={"wait": "true"})).json()
        assert restarted["state"] == "ready" and restarted["pid"] != started["pid"]

        logs = (await http.get("/api/services/web/logs", params={"tail": 2})).json()
        assert logs["service"] == "web" and len(logs["lines"]) == 2
        assert logs["total"] >= 6
        assert {"ts", "stream", "line"} <= set(logs["lines"][0])
        everything = (await http.get("/api/services/web/logs")).json()["lines"]
        assert sum(READY in line["line"] for line in everything) == 3

        missing = await http.get("/api/services/nope")
        assert missing.status_code == 404
        assert missing.json()["detail"]["code"] == "not_found"
        bad_tail = await http.get("/api/services/web/logs", params={"tail": -1})
        assert bad_tail.status_code == 422


async def test_start_with_wait_reports_failure_with_the_last_lines(hub_server):
    bad = service("bad", "exit", "5", required=False)
    running = await hub_server(services=[bad], stats_interval=0)
    async with httpx.AsyncClient(base_url=running.http) as http:
        response = await http.post("/api/services/bad/start", params={"wait": "true"})
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert detail["code"] == "service_error" and detail["service"] == "bad"
        assert "exited with code 5 before it was ready" in detail["message"]
        assert "fatal: cannot open config" in detail["message"]
        # Not required: the hub itself stays ready.
        assert (await http.get("/readyz")).status_code == 200


async def test_state_events_and_log_lines_reach_websocket_clients(hub_server, ws_client):
    restart = {"policy": "on-failure", "initial": 0.05, "cap": 0.1, "max_restarts": 10}
    crashy = service("crashy", "crash-after-ready", str(1.5 * FACTOR), restart=restart)
    running = await hub_server(services=[crashy], stats_interval=0)
    watcher = await ws_client(running.ws, "watcher")
    await watcher.request("join", room="$services")
    await watcher.request("join", room="$service:crashy")
    # It crashes after 1.5 s, is restarted after a backoff and is ready again.
    seen: list[str] = []
    lines: list[dict[str, Any]] = []
    while seen[-1:] != ["ready"]:
        frame = await watcher.wait_for("message", timeout=10)
        if frame["room"] == "$services":
            event = frame["data"]
            assert event["event"] == "state" and event["service"] == "crashy"
            seen.append(event["state"])
            if event["state"] == "exited":
                assert event["exit_code"] == 3
            if event["state"] == "backoff":
                assert event["restarts"] == 1
        else:
            assert frame["room"] == "$service:crashy"
            lines.append(frame["data"])
    assert seen == ["exited", "backoff", "starting", "ready"]
    assert {"service": "crashy", "stream": "stderr", "line": "crashing"} in lines
    assert {"service": "crashy", "stream": "stdout", "line": READY} in lines
    info = running.hub.services["crashy"].info()
    assert info["restarts"] == 1 and info["state"] == "ready"


@pytest.mark.parametrize(
    ("services", "message"),
    [
        (
            [{"name": "a", "command": "x", "depends_on": ["b"]}],
            "services: 'a' depends on unknown 'b'",
        ),
        (
            [
                {"name": "a", "command": "x", "depends_on": ["b"]},
                {"name": "b", "command": "x", "depends_on": ["a"]},
            ],
            "services: depends_on cycle a -> b -> a",
        ),
        (
            [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}],
            "each name may appear once",
        ),
        (
            [{"name": "a", "command": "x", "ready": {"log": "up", "tcp": "127.0.0.1:1"}}],
            "services.0.ready: give at most one of log, tcp, http",
        ),
        ([{"name": "a", "command": "x", "ready": {"tcp": "nowhere"}}], "expected 'host:port'"),
        ([{"name": "a", "command": "x", "stop_signal": "SIGNOPE"}], "unknown signal 'SIGNOPE'"),
        (
            [{"name": "a", "command": "x", "restart": {"policy": "sometimes"}}],
            "services.0.restart.policy",
        ),
    ],
)
def test_bad_service_config_names_the_problem(services, message):
    with pytest.raises(ConfigError) as info:
        load_settings(None, services=services)
    assert message in str(info.value)


def test_command_string_is_split_without_a_shell():
    settings = load_settings(None, services=[{"name": "a", "command": "prog --name 'two words'"}])
    assert settings.services[0].command == ["prog", "--name", "two words"]
    shell = load_settings(None, services=[{"name": "b", "command": "a | b", "shell": True}])
    assert shell.services[0].command == ["a | b"]
