"""Jobs and uploads: submit-to-result latency, jobs/s, upload MB/s.

    .venv/bin/python bench/jobs.py [--jobs 1000] [--upload-mb 50] [--no-celery]

Starts real processes: ``wirehub serve`` (embedded runner), then redis-server,
one ``wirehub worker`` (solo pool) and ``wirehub serve`` with runner = "celery".
Latency: one job at a time over one WebSocket (submit → job.result). Throughput:
all jobs submitted at once, time until the last result. Upload: a random file
sent with ``wirehub.client.upload_file`` (1 MiB chunks, 4 in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from wirehub.client import upload_file

HERE = Path(__file__).parent
#: The benchmark client floods on purpose: no per-connection or per-client rate limits.
LIMITS = "[limits]\nrate = 0\njob_submits_per_minute = 0\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_line(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        if text in raw.decode(errors="replace"):
            return
    raise RuntimeError(f"process exited before printing {text!r}")


def start(args: list[str], ready: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    wait_line(proc, ready)
    # Keep draining output so the child never blocks on a full pipe.
    import threading

    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()
    return proc


def serve(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "wirehub", "serve", "--port", str(port), "--config", str(config)]
    return start(cmd, "Uvicorn running on", env), f"ws://127.0.0.1:{port}/ws"


async def latency(url: str, n: int, job: str) -> list[float]:
    times = []
    async with connect(url, max_size=2**24) as ws:
        await ws.recv()
        for i in range(n):
            t0 = time.perf_counter()
            await ws.send(
                orjson.dumps({"type": "job.submit", "job": job, "args": {"i": i}}).decode()
            )
            while orjson.loads(await ws.recv()).get("type") != "job.result":
                pass
            times.append(time.perf_counter() - t0)
    return times


async def throughput(url: str, n: int, job: str) -> float:
    async with connect(url, max_size=2**24) as ws:
        await ws.recv()
        t0 = time.perf_counter()
        for i in range(n):
            await ws.send(
                orjson.dumps({"type": "job.submit", "job": job, "args": {"i": i}}).decode()
            )
        done = 0
        while done < n:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") in ("job.result", "job.failed", "error"):
                done += 1
        return n / (time.perf_counter() - t0)


def report(label: str, lat: list[float], rate: float) -> None:
    lat_ms = sorted(x * 1000 for x in lat)
    p99 = lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))]
    print(
        f"{label:<28} latency p50 {statistics.median(lat_ms):6.2f} ms  p99 {p99:6.2f} ms   "
        f"throughput {rate:8.0f} jobs/s"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--upload-mb", type=int, default=50)
    parser.add_argument("--no-celery", action="store_true")
    opts = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="wirehub-bench-"))
    try:
        local_cfg = tmp / "local.toml"
        local_cfg.write_text(
            f'stats_interval = 0\n[server]\nlog_level = "info"\n{LIMITS}'
            f'[jobs]\nmodules = ["bench_jobs"]\nconcurrency = 8\n'
            f'[uploads]\ndir = "{tmp / "spool"}"\n'
        )
        hub, url = serve(local_cfg, env)
        try:
            for job in ("noop", "noop_sync"):
                lat = asyncio.run(latency(url, 200, job))
                rate = asyncio.run(throughput(url, opts.jobs, job))
                report(f"embedded ({job})", lat, rate)
            data = tmp / "upload.bin"
            with data.open("wb") as f:
                for _ in range(opts.upload_mb):
                    f.write(os.urandom(1024 * 1024))
            t0 = time.perf_counter()
            asyncio.run(upload_file(url, data))
            elapsed = time.perf_counter() - t0
            label = f"upload {opts.upload_mb} MB"
            print(
                f"{label:<28} {opts.upload_mb / elapsed:8.1f} MB/s "
                f"({elapsed:.2f} s, includes the client's SHA-256 pass)"
            )
        finally:
            stop(hub)
        if opts.no_celery or shutil.which("redis-server") is None:
            return
        rport = free_port()
        redis = start(
            ["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
            "Ready to accept connections",
            env,
        )
        celery_cfg = tmp / "celery.toml"
        celery_cfg.write_text(
            f'redis_url = "redis://127.0.0.1:{rport}/0"\nstats_interval = 0\n'
            f'[server]\nlog_level = "info"\n{LIMITS}'
            f'[jobs]\nrunner = "celery"\nmodules = ["bench_jobs"]\n'
            f'[uploads]\ndir = "{tmp / "spool"}"\n'
        )
        worker = start(
            [sys.executable, "-m", "wirehub", "worker", "--config", str(celery_cfg)],
            "wirehub worker ready",
            {**env, "WIREHUB_SERVER__LOG_LEVEL": "info"},
        )
        hub, url = serve(celery_cfg, env)
        try:
            n = max(50, opts.jobs // 4)
            lat = asyncio.run(latency(url, 100, "noop"))
            rate = asyncio.run(throughput(url, n, "noop"))
            report("celery, 1 solo worker", lat, rate)
        finally:
            stop(hub)
            stop(worker)
            stop(redis)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
