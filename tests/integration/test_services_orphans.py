"""Services die with the hub, even when the hub is killed with SIGKILL.

A real ``wirehub serve`` runs two services: ``tree`` (a leader, a child and two
grandchildren, one holding a TCP port and one ignoring SIGTERM) and ``shell``
(``sh -c "sleep 1000 & exec sleep 1001"``). Each test kills things the way a
user (or the OOM killer) would and checks, through ``/proc``, that every
process of those trees is gone, and that the next start can bind the port.
The state directory is private to each test (``XDG_RUNTIME_DIR``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import FACTOR, HubProcess, spawn_hub, unused_port
from wirehub.services.reaper import Reaper
from wirehub.services.watchdog import proc_start

PROGRAM = str(Path(__file__).parent.parent / "programs" / "tree_service.py")
#: The promise: nothing of a service is left this long after the hub is killed.
CLEANUP_BOUND = 2.0 * FACTOR

Pid = tuple[int, int]  # (pid, start time): a pid alone may be reused


def write_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "hub.toml"
    config.write_text(
        f"""
stats_interval = 0

[[services]]
name = "tree"
command = [{sys.executable!r}, {PROGRAM!r}, "{port}", "--stubborn"]
ready = {{ log = "^listening port=" }}
ready_timeout = {10 * FACTOR}
stop_timeout = 0.5

[[services]]
name = "shell"
command = ["sh", "-c", "sleep 1000 & exec sleep 1001"]
stop_timeout = 0.5
"""
    )
    return config


def runtime_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {"XDG_RUNTIME_DIR": str(runtime)}, runtime / "wirehub"


def group_members(pgid: int) -> list[Pid]:
    """Running (not zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append((int(entry), int(fields[19])))
    return sorted(found)


def running(pid: Pid) -> bool:
    """Is this very process (pid and start time) still running (zombies do not count)?"""
    try:
        raw = Path(f"/proc/{pid[0]}/stat").read_bytes()
    except OSError:
        return False
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[19]) == pid[1] and fields[0] not in (b"Z", b"X")


def poll(check, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met in time"
        time.sleep(0.01)


def service_trees(hp: HubProcess) -> dict[str, list[Pid]]:
    """Every pid of each service, once all of them have been forked."""
    with httpx.Client(base_url=hp.http, trust_env=False) as http:
        pgids = {
            name: http.get(f"/api/services/{name}").json()["pid"] for name in ("tree", "shell")
        }
    sizes = {"tree": 4, "shell": 2}  # leader, child, 2 grandchildren / sh->sleep 1001, sleep 1000
    trees = {}
    for name, pgid in pgids.items():
        trees[name] = poll(
            lambda pgid=pgid, n=sizes[name]: (lambda m: m if len(m) == n else None)(
                group_members(pgid)
            ),
            what=f"{name} has {sizes[name]} processes",
        )
    return trees


def records(state_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(state_dir.glob("services-*.json"))]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(hp: HubProcess) -> str:
    hp.signal(signal.SIGTERM)
    assert hp.wait() == 0
    hp.cleanup()
    return hp.output()


def test_sigkill_of_the_hub_takes_every_process_of_its_services(tmp_path):
    port = unused_port()
    env, state_dir = runtime_env(tmp_path)
    config = write_config(tmp_path, port)
    hp = spawn_hub(config, env=env)
    try:
        trees = service_trees(hp)
        assert port_taken(port)
        (record,) = records(state_dir)
        assert {g["service"] for g in record["groups"]} == {"tree", "shell"}
        watchdog = (record["watchdog"]["pid"], record["watchdog"]["start"])
        assert running(watchdog)

        hp.signal(signal.SIGKILL)
        killed = time.monotonic()
        hp.wait()
        everything = [pid for tree in trees.values() for pid in tree] + [watchdog]
        poll(lambda: not any(map(running, everything)), CLEANUP_BOUND, "service trees gone")
        elapsed = time.monotonic() - killed
        assert elapsed < CLEANUP_BOUND
        assert not port_taken(port)
        # The watchdog said what it did, and left nothing for the next start to do.
        poll(lambda: not records(state_dir), what="the record deleted")
        hp.cleanup()
        output = hp.output()
        assert f"hub pid {hp.proc.pid} is gone" in output
        assert "SIGKILL to process group" in output  # the stubborn grandchild
    finally:
        hp.cleanup()

    # The next start binds the same port at once.
    again = spawn_hub(config, env=env)
    try:
        with httpx.Client(base_url=again.http, trust_env=False) as http:
            info = http.get("/api/services/tree").json()
            lines = http.get("/api/services/tree/logs").json()["lines"]
        assert info["state"] == "ready"
        assert any(e["line"].startswith(f"listening port={port}") for e in lines)
        assert "left service" not in again.output()  # nothing was left to clean up
        new_trees = service_trees(again)
        (record,) = records(state_dir)
        watchdog = (record["watchdog"]["pid"], record["watchdog"]["start"])
        # A clean stop leaves no watchdog, no record and no process behind.
        stop(again)
        leftovers = [p for tree in new_trees.values() for p in tree] + [watchdog]
        poll(lambda: not any(map(running, leftovers)), what="all gone after a clean stop")
        assert records(state_dir) == []
    finally:
        again.cleanup()


def test_the_next_start_cleans_up_when_the_watchdog_died_too(tmp_path):
    port = unused_port()
    env, state_dir = runtime_env(tmp_path)
    config = write_config(tmp_path, port)
    hp = spawn_hub(config, env=env)
    try:
        trees = service_trees(hp)
        (record,) = records(state_dir)
        watchdog = (record["watchdog"]["pid"], record["watchdog"]["start"])
        # Both die at once (the OOM killer, `kill -9` of both): stop the watchdog
        # first so that it cannot act, then SIGKILL the hub and the watchdog.
        os.kill(watchdog[0], signal.SIGSTOP)
        hp.signal(signal.SIGKILL)
        hp.wait()
        os.kill(watchdog[0], signal.SIGKILL)
        poll(lambda: not running(watchdog), what="the watchdog gone")
    finally:
        hp.cleanup()
    orphans = [pid for tree in trees.values() for pid in tree]
    assert all(map(running, orphans)), "the orphans should have survived both kills"
    assert port_taken(port)

    again = spawn_hub(config, env=env)
    try:
        # Before it started the new tree (whose grandchild binds the port), the
        # start stopped the orphans, naming each service and its pids.
        assert not any(map(running, orphans))
        output = again.output()
        tree_pids = " ".join(str(p) for p, _ in trees["tree"])
        assert (
            f"hub pid {hp.proc.pid} died and left service 'tree' running "
            f"(process group {trees['tree'][0][0]}: pids {tree_pids}); stopping it"
        ) in output
        assert "left service 'shell' running" in output
        with httpx.Client(base_url=again.http, trust_env=False) as http:
            assert http.get("/api/services/tree").json()["state"] == "ready"
        # Only the new hub's record is left.
        (record,) = records(state_dir)
        assert record["owner"]["pid"] == again.proc.pid
        stop(again)
    finally:
        again.cleanup()


def test_a_reused_pid_is_never_killed(tmp_path):
    env, state_dir = runtime_env(tmp_path)
    state_dir.mkdir(mode=0o700)
    # Three programs, each leading its own process group, as a service would.
    victim, leftover, other = (
        subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(3)
    )
    procs = (victim, leftover, other)
    try:
        starts = {p.pid: poll(lambda p=p: proc_start(p.pid)) for p in procs}
        me = (os.getpid(), proc_start(os.getpid()))
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

        def group(p, start, service):
            return {"pgid": p.pid, "start": start, "service": service, "stop_signal": 15}

        def plant(name, owner, groups):
            data = {"version": 1, "boot": boot, "owner": owner, "watchdog": None, "groups": groups}
            (state_dir / name).write_text(json.dumps(data))

        # A dead hub recorded `victim`'s pid with another start time: the pid was
        # reused by an unrelated program. It also left `leftover` behind for real.
        dead = {"pid": me[0], "start": me[1] - 1}
        plant(
            "services-1-aaaaaaaa.json",
            dead,
            [
                group(victim, starts[victim.pid] - 100, "old"),
                group(leftover, starts[leftover.pid], "left"),
            ],
        )
        # A hub that still runs (this process) owns `other`: never touched.
        live = {"pid": me[0], "start": me[1]}
        plant("services-2-bbbbbbbb.json", live, [group(other, starts[other.pid], "live")])

        port = unused_port()
        hp = spawn_hub(write_config(tmp_path, port), env=env)
        try:
            output = hp.output()
            assert leftover.wait(timeout=5 * FACTOR) == -signal.SIGTERM
            assert victim.poll() is None
            assert other.poll() is None
            assert f"left service 'left' running (process group {leftover.pid}" in output
            assert "'old'" not in output and "'live'" not in output
            assert not (state_dir / "services-1-aaaaaaaa.json").exists()
            assert (state_dir / "services-2-bbbbbbbb.json").exists()
            stop(hp)
        finally:
            hp.cleanup()
        assert victim.poll() is None and other.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_a_killed_watchdog_is_replaced_while_the_hub_runs(tmp_path):
    port = unused_port()
    env, state_dir = runtime_env(tmp_path)
    hp = spawn_hub(write_config(tmp_path, port), env=env)
    try:
        trees = service_trees(hp)
        (record,) = records(state_dir)
        first = record["watchdog"]["pid"]
        os.kill(first, signal.SIGKILL)

        def replaced():
            (rec,) = records(state_dir)
            w = rec["watchdog"]
            return w if w and w["pid"] != first and running((w["pid"], w["start"])) else None

        poll(replaced, what="a new watchdog")
        # The new one knows every group: a SIGKILL of the hub still takes them all.
        hp.signal(signal.SIGKILL)
        hp.wait()
        everything = [pid for tree in trees.values() for pid in tree]
        poll(lambda: not any(map(running, everything)), CLEANUP_BOUND, "service trees gone")
        assert not port_taken(port)
        hp.cleanup()
        assert f"watchdog pid {first} exited" in hp.output()
    finally:
        hp.cleanup()


def test_a_state_directory_open_to_other_users_is_not_used(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant a record naming our processes
    reaper = Reaper(state_dir=str(shared))
    with caplog.at_level(logging.WARNING, logger="wirehub.services"):
        assert reaper.state_dir is None
    assert f"not keeping records in {shared} (other users may use it (mode 777" in caplog.text
    private = tmp_path / "private"
    assert Reaper(state_dir=str(private)).state_dir == str(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
