"""Real redis-server and real ``wirehub worker`` processes for the tests.

* ``redis_server`` (session): ``redis-server --port <free> --save "" --appendonly no``,
  yields its URL. Missing binary: skip locally, fail when ``CI=true``.
* ``redis_url``: the same URL, with the database flushed before the test.
* ``celery_worker`` (session): one ``python -m wirehub worker --config <toml>``
  subprocess (solo pool) running ``tests/jobs_fixtures.py``.
* ``jobs_runner`` / ``jobs_settings`` / ``jobs_hub``: the job suites run once per
  runner (``local``, ``celery``) against a hub configured for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import FACTOR, RunningHub, unused_port
from wirehub.settings import Settings, load_settings

__all__ = [
    "WorkerProcess",
    "celery_worker",
    "jobs_hub",
    "jobs_runner",
    "jobs_settings",
    "redis_server",
    "redis_url",
    "spawn_redis",
    "spawn_worker",
    "write_worker_config",
]

TESTS = Path(__file__).parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    proc, url = spawn_redis()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@dataclass
class WorkerProcess:
    """A ``wirehub worker`` subprocess whose output is read by a thread."""

    proc: subprocess.Popen[bytes]
    config: Path
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout * FACTOR
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"worker: no line with {text!r}:\n{self.output()}")
                self._cond.wait(min(left, 0.5))

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self.pump is not None:
            self.pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10 * FACTOR)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()


def write_worker_config(path: Path, redis: str, *, queue: str = "wirehub", **jobs: Any) -> Path:
    options = {
        "runner": "celery",
        "modules": ["jobs_fixtures"],
        "queue": queue,
        "concurrency": 1,
        "cancel_grace": 0.5,
        "worker_lease": 1.0,
        **jobs,
    }

    def toml(value: Any) -> str:
        if isinstance(value, str):
            return f'"{value}"'
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        return str(value).lower() if isinstance(value, bool) else str(value)

    lines = [f'redis_url = "{redis}"', "stats_interval = 0", "[jobs]"]
    lines += [f"{key} = {toml(value)}" for key, value in options.items()]
    lines += ["[uploads]", f'dir = "{path.parent / "spool"}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn_worker(config: Path) -> WorkerProcess:
    """Start ``python -m wirehub worker --config config``; return once it is ready."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirehub", "worker", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    worker = WorkerProcess(proc, config)
    worker.pump = threading.Thread(target=worker._pump, daemon=True)
    worker.pump.start()
    try:
        worker.wait_line("wirehub worker ready")
    except BaseException:
        worker.stop()
        raise
    return worker


@pytest.fixture(scope="session")
def celery_worker(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    config = write_worker_config(tmp_path_factory.mktemp("celery") / "worker.toml", redis_server)
    worker = spawn_worker(config)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(params=["local", "celery"])
def jobs_runner(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jobs_settings(jobs_runner: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if jobs_runner == "celery":
        worker: WorkerProcess = request.getfixturevalue("celery_worker")
        request.getfixturevalue("redis_url")  # flushed for this test
        return load_settings(worker.config)
    return load_settings(
        None,
        stats_interval=0,
        jobs={"modules": ["jobs_fixtures"], "concurrency": 1, "cancel_grace": 0.5},
        uploads={"dir": str(tmp_path / "spool")},
    )


@pytest.fixture
async def jobs_hub(
    jobs_settings: Settings, hub_server: Callable[..., Awaitable[RunningHub]]
) -> RunningHub:
    return await hub_server(jobs_settings)


def spawn_redis(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server (no persistence) on ``port`` (free if None): (process, URL).

    For tests that stop and restart Redis, which must not touch the session's server.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    port = port or unused_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = []
    for raw in proc.stdout:
        seen.append(raw.decode(errors="replace"))
        if "Ready to accept connections" in seen[-1]:
            break
    else:
        proc.wait()
        raise RuntimeError("redis-server did not start:\n" + "".join(seen))
    stdout = proc.stdout

    def drain() -> None:  # keep the pipe drained; close it at EOF
        with stdout:
            stdout.read()

    threading.Thread(target=drain, daemon=True).start()
    return proc, f"redis://127.0.0.1:{port}/0"
