"""``wirehub serve`` as a real process receiving SIGTERM while a service is starting.

The service (a script whose child ignores SIGTERM and holds stdout) never
becomes ready; the hub must leave no process of the service's group behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import FACTOR, drain_output, spawn_hub, unused_port

PROGRAM = str(Path(__file__).parent.parent / "programs" / "fake_service.py")


def write_config(path: Path, *, required: bool, ready_timeout: float) -> Path:
    config = path / "hub.toml"
    config.write_text(
        f"""
stats_interval = 0

[[services]]
name = "slow"
command = [{sys.executable!r}, {PROGRAM!r}, "spawn-child"]
ready = {{ log = "this line never comes" }}
ready_timeout = {ready_timeout}
required = {"true" if required else "false"}
stop_timeout = 0.5
"""
    )
    return config


def wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Bounded poll until no process of the group is left (zombies included)."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process group {pgid} still has processes"
        time.sleep(0.02)


def poll(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sigterm_to_the_hub_while_a_service_is_starting(tmp_path):
    hp = spawn_hub(write_config(tmp_path, required=False, ready_timeout=30))
    try:
        with httpx.Client(base_url=hp.http) as http:

            def child_line():
                lines = http.get("/api/services/slow/logs").json()["lines"]
                return next((e["line"] for e in lines if e["line"].startswith("child pid=")), None)

            child = int(poll(child_line).removeprefix("child pid="))
            info = http.get("/api/services/slow").json()
            assert info["state"] == "starting"
            pgid = info["pid"]
        assert os.getpgid(child) == pgid
        hp.signal(signal.SIGTERM)
        assert hp.wait() == 0
    finally:
        if hp.proc.poll() is None:
            hp.proc.kill()
            hp.proc.wait()
    output = drain_output(hp)
    hp.proc.stdout.close()
    assert f"sending SIGTERM to process group {pgid}" in output
    assert "service slow: stopped" in output
    wait_group_gone(pgid)


def test_sigterm_while_a_required_service_holds_the_start(tmp_path):
    port = unused_port()
    config = write_config(tmp_path, required=True, ready_timeout=60)
    args = [sys.executable, "-m", "wirehub", "serve", "--port", str(port), "--config", str(config)]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace"))
            found = re.search(r"service slow: starting \(pid=(\d+)", lines[-1])
            if found:
                pgid = int(found.group(1))
                break
        else:
            raise AssertionError("".join(lines))
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=15 * FACTOR)
        # The signal interrupts the start at once (not after ready_timeout),
        # stops what was started, and is a clean exit.
        assert time.monotonic() - started < 10 * FACTOR
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    output = "".join(lines) + proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    assert "start interrupted by a shutdown signal while starting services" in output
    assert "Traceback" not in output
    wait_group_gone(pgid)
