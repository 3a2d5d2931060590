"""Run one extra's feature for real, inside the fresh venv that ``scripts/check-extras`` made.

``python extras_probe.py core|redis|celery --workdir DIR [--redis-server PATH]``

It runs with the venv's interpreter, so it may import only the standard library and what
that install brought: ``websockets`` is a core dependency of wirehub, so the client side of
every check is raw ``websockets`` and JSON. The hub, the worker and redis-server are real
subprocesses (``wirehub serve``, ``wirehub worker``, ``redis-server``) in this process's
group: whoever started the probe can end all of them at once with ``killpg``, and the probe
itself stops each one (SIGTERM, then SIGKILL) before it exits, pass or fail.

Exit 0 and one ``ok`` line per step on success; on failure, exit 1 with the failing step
and the tail of each process's output.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CheckFailed", "main"]

#: Seconds for any one wait (a process's readiness line, a frame, an HTTP answer).
FACTOR = float(os.environ.get("WIREHUB_TEST_TIMEOUT_FACTOR", "1"))
WAIT = 20.0 * FACTOR
BIN = Path(sys.executable).parent


class CheckFailed(Exception):
    """A step did not do what the extra promises; the message says which and why."""


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (tests/support.py says why)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(200 if low > 21000 else 0):
        port = random.randrange(20000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would point at the working tree."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("WIREHUB_") and k != "PYTHONPATH"
    }
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


class Proc:
    """A child process whose merged output a thread reads line by line."""

    def __init__(self, name: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, text: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                if self.proc.poll() is not None and not self._pump.is_alive():
                    raise CheckFailed(
                        f"{self.name} exited with {self.proc.returncode} before printing {text!r}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CheckFailed(f"{self.name} did not print {text!r} within {timeout:.0f}s")
                self._cond.wait(min(left, 0.2))

    def tail(self, count: int = 25) -> str:
        with self._cond:
            return "".join(self.lines[-count:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10 * FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)


class Run:
    """The processes of one check: started in order, stopped in reverse, always."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, args: list[str], **env: str) -> Proc:
        proc = Proc(name, args, cwd=self.workdir, env=clean_env(**env))
        self.procs.append(proc)
        return proc

    def hub(self, name: str, *extra: str, **env: str) -> tuple[Proc, int]:
        port = free_port()
        proc = self.start(name, [str(BIN / "wirehub"), "serve", "--port", str(port), *extra], **env)
        proc.wait_line("Uvicorn running on")
        return proc, port

    def redis(self, binary: str) -> str:
        port = free_port()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = self.start("redis-server", [binary, *args])
        proc.wait_line("Ready to accept connections")
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def report(self) -> str:
        return "\n".join(f"--- {p.name} (last lines) ---\n{p.tail()}" for p in self.procs)


@contextmanager
def running(workdir: Path) -> Iterator[Run]:
    run = Run(workdir)
    try:
        yield run
    except CheckFailed as exc:
        raise CheckFailed(f"{exc}\n{run.report()}") from None
    except Exception as exc:  # a client error (connection refused, closed): same report
        raise CheckFailed(f"{type(exc).__name__}: {exc}\n{run.report()}") from exc
    finally:
        run.stop()


def ok(what: str) -> None:
    print(f"  ok   {what}", flush=True)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as resp:
            return resp.status, resp.read()
    except OSError as exc:
        raise CheckFailed(f"GET {url}: {exc}") from None


def wait_ready(port: int) -> None:
    """Poll /readyz (503 while the node cannot reach Redis) until it answers 200."""
    url = f"http://127.0.0.1:{port}/readyz"
    deadline = time.monotonic() + WAIT
    while True:
        answer = "no answer"
        try:
            with urllib.request.urlopen(url, timeout=WAIT) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            answer = f"{exc.code} {exc.read()[:200]!r}"
        except OSError as exc:
            answer = str(exc)
        if time.monotonic() > deadline:
            raise CheckFailed(f"{url} not ready within {WAIT:.0f}s: {answer}")
        time.sleep(0.1)


class Client:
    """Raw ``websockets`` and JSON: what any non-Python client would do."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.refs = 0

    @classmethod
    async def open(cls, port: int, client_id: str) -> Client:
        from websockets.asyncio.client import connect

        url = f"ws://127.0.0.1:{port}/ws?client_id={client_id}"
        client = cls(await connect(url, open_timeout=WAIT))
        await client.expect("welcome")
        return client

    async def send(self, **frame: Any) -> str:
        self.refs += 1
        frame["ref"] = ref = f"r{self.refs}"
        await self.ws.send(json.dumps(frame))
        return ref

    async def expect(self, kind: str, **match: Any) -> dict[str, Any]:
        """Skip other frames until one of this type (with these fields) arrives."""
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                break
            if frame.get("type") == "error":
                raise CheckFailed(f"waiting for {kind}, the hub answered {frame}")
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame  # type: ignore[no-any-return]
        raise CheckFailed(f"no {kind} {match or ''} frame within {WAIT:.0f}s")

    async def close(self) -> None:
        await self.ws.close()


async def publish_and_deliver(port_a: int, port_b: int, room: str) -> None:
    """bob (on B) is in the room; alice (on A) publishes; bob gets it, alice gets her ack."""
    alice = await Client.open(port_a, "alice")
    bob = await Client.open(port_b, "bob")
    try:
        await alice.send(type="join", room=room)
        await alice.expect("joined", room=room)
        await bob.send(type="join", room=room)
        await bob.expect("joined", room=room)
        await alice.expect("presence", event="join", client_id="bob")
        ref = await alice.send(type="publish", room=room, data={"n": 1})
        ack = await alice.expect("ack", ref=ref)
        message = await bob.expect("message", room=room)
        if message.get("data") != {"n": 1} or message.get("from") != "alice":
            raise CheckFailed(f"bob got the wrong message: {message}")
        if message.get("offset") != ack.get("offset"):
            raise CheckFailed(f"ack {ack} and delivery {message} disagree on the offset")
    finally:
        await alice.close()
        await bob.close()


def assert_installed_copy() -> None:
    """The hub that runs is the installed wheel, not the working tree."""
    spec = importlib.util.find_spec("wirehub")
    origin = Path(spec.origin if spec and spec.origin else "?").resolve()
    if Path(sys.prefix).resolve() not in origin.parents:
        raise CheckFailed(f"wirehub is imported from {origin}, not from the venv {sys.prefix}")


def assert_absent(*modules: str) -> None:
    """What the extra does not install stays out: the check proves it is not needed."""
    present = [m for m in modules if importlib.util.find_spec(m) is not None]
    if present:
        raise CheckFailed(f"{', '.join(present)} installed without being asked for")


def check_core(workdir: Path) -> None:
    assert_installed_copy()
    assert_absent("redis", "celery")
    with running(workdir) as run:
        _, port = run.hub("wirehub serve")
        ok("wirehub serve started")
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        if status != 200 or json.loads(body).get("status") != "ok":
            raise CheckFailed(f"/healthz answered {status} {body[:200]!r}")
        ok("/healthz answers ok")
        # Package data: the dashboard's files come from the installed wheel.
        status, body = http_get(f"http://127.0.0.1:{port}/")
        if status != 200 or b"<html" not in body.lower():
            raise CheckFailed(f"/ (dashboard) answered {status} {body[:200]!r}")
        status, body = http_get(f"http://127.0.0.1:{port}/static/wirehub.js")
        if status != 200 or not body:
            raise CheckFailed(f"/static/wirehub.js answered {status}")
        ok("dashboard and static files served from the wheel")
        asyncio.run(publish_and_deliver(port, port, "lobby"))
        ok("WebSocket publish reaches another member, with an ack")


def check_redis(workdir: Path, redis_binary: str) -> None:
    assert_installed_copy()
    assert_absent("celery")
    with running(workdir) as run:
        url = run.redis(redis_binary)
        ok(f"redis-server on {url}")
        env = {"WIREHUB_REDIS_URL": url, "WIREHUB_REDIS__PREFIX": f"x{uuid.uuid4().hex[:6]}"}
        _, port_a = run.hub("node A", **env)
        _, port_b = run.hub("node B", **env)
        ok("two nodes started on one Redis")
        for port in (port_a, port_b):
            wait_ready(port)
        ok("both nodes ready (Redis reachable)")
        asyncio.run(publish_and_deliver(port_a, port_b, "cluster"))
        ok("a message published on node A reaches a client on node B")


JOBS_MODULE = '''\
"""The job the celery check runs: the hub submits it, the worker runs it."""

from wirehub.jobs import JobContext, job


@job(name="double")
async def double(ctx: JobContext, x: int) -> int:
    ctx.progress(0.5, "halfway")
    return 2 * x
'''


async def submit_job(port: int) -> None:
    client = await Client.open(port, "jobber")
    try:
        ref = await client.send(type="job.submit", job="double", args={"x": 21})
        accepted = await client.expect("job.accepted", ref=ref)
        job_id = accepted["job_id"]
        result = await client.expect("job.result", job_id=job_id)
        if result.get("result") != 42:
            raise CheckFailed(f"job {job_id} returned {result}, expected 42")
    finally:
        await client.close()


def check_celery(workdir: Path, redis_binary: str) -> None:
    assert_installed_copy()
    (workdir / "extras_jobs.py").write_text(JOBS_MODULE)
    with running(workdir) as run:
        url = run.redis(redis_binary)
        config = workdir / "hub.toml"
        config.write_text(
            f'redis_url = "{url}"\n'
            "stats_interval = 0\n"
            "[jobs]\n"
            'runner = "celery"\n'
            'modules = ["extras_jobs"]\n'
            "[uploads]\n"
            f'dir = "{workdir / "spool"}"\n'
        )
        env = {"PYTHONPATH": str(workdir)}
        worker = run.start(
            "wirehub worker", [str(BIN / "wirehub"), "worker", "--config", str(config)], **env
        )
        worker.wait_line("wirehub worker ready")
        ok("wirehub worker ready")
        _, port = run.hub("wirehub serve (runner = celery)", "--config", str(config), **env)
        ok("hub with runner = celery started")
        asyncio.run(submit_job(port))
        ok("a job submitted over WebSocket ran on the worker and its result came back")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", choices=["core", "redis", "celery"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--redis-server", default="redis-server")
    opts = parser.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    try:
        if opts.extra == "core":
            check_core(opts.workdir)
        elif opts.extra == "redis":
            check_redis(opts.workdir, opts.redis_server)
        else:
            check_celery(opts.workdir, opts.redis_server)
    except CheckFailed as exc:
        print(f"  FAIL {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
