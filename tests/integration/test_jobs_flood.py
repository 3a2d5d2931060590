"""A job emitting outputs as fast as it can: bounded end to end, the producer slows down.

Real hubs (a ``wirehub serve`` subprocess where latency and memory are measured,
in-process where the test stalls the hub's loop on purpose), real WebSockets,
for the Celery runner a real worker. The stall tests observe the producer
through counters it keeps (``jobs_fixtures.PRODUCED``, or a file), not timing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect

import jobs_fixtures
from support import FACTOR, TIMEOUT, spawn_hub
from wirehub.client import HubClient
from wirehub.jobs.buffer import DEFAULT_MAX_EVENTS, MAX_BATCH_ITEMS, SYNC_SLACK
from wirehub.jobs.celery_common import CREDIT_WINDOW, MAX_EVENTS_PER_JOB

TESTS = Path(__file__).parents[1]
JOBS = {"modules": ["jobs_fixtures"], "concurrency": 2, "cancel_grace": 0.5}
FINAL = ("job.result", "job.failed", "job.cancelled")


async def submit(ws: ClientConnection, job: str, **args: Any) -> str:
    frame = {"type": "job.submit", "job": job, "args": args, "ref": "s"}
    await ws.send(orjson.dumps(frame).decode())
    while True:
        frame = orjson.loads(await ws.recv())
        if frame.get("ref") == "s":
            assert frame["type"] == "job.accepted", frame
            return str(frame["job_id"])


async def follow(
    ws: ClientConnection, job_id: str, seen: list[Any] | None = None
) -> tuple[list[Any], int, dict[str, Any]]:
    """Read this job's frames until its final one: (outputs in order, output frames, final)."""
    outputs: list[Any] = seen if seen is not None else []
    frames = 0
    while True:
        raw = await asyncio.wait_for(ws.recv(), TIMEOUT * 4)
        frame = orjson.loads(raw)
        if frame.get("job_id") != job_id:
            continue
        if frame["type"] == "job.output":
            frames += 1
            outputs.extend(frame["items"] if "items" in frame else [frame["data"]])
        elif frame["type"] in FINAL:
            return outputs, frames, frame


def numbered(n: int) -> list[dict[str, int]]:
    return [{"i": i} for i in range(n)]


async def test_flood_delivers_every_output_while_the_hub_stays_responsive(tmp_path):
    """100 000 outputs from a thread against ``wirehub serve`` with default limits.

    Before the bound this blocked ``/healthz`` for about a second, delayed the other
    room by more, grew the hub by ~60 MiB and could close the submitter (4001).
    """
    n = 100_000
    config = tmp_path / "hub.toml"
    config.write_text(
        f'stats_interval = 0\n[jobs]\nmodules = ["jobs_fixtures"]\n'
        f'[uploads]\ndir = "{tmp_path / "spool"}"\n'
    )
    hub = await asyncio.to_thread(spawn_hub, config, env={"PYTHONPATH": str(TESTS)})
    try:
        proc = psutil.Process(hub.proc.pid)
        async with (
            connect(hub.ws, max_size=2**24) as alice,
            connect(hub.ws) as bob,
            connect(hub.ws) as carol,
            httpx.AsyncClient(base_url=hub.http) as http,
        ):
            for ws in (alice, bob, carol):
                await ws.recv()  # welcome
            for ws in (bob, carol):
                await ws.send(orjson.dumps({"type": "join", "room": "chat", "ref": "j"}).decode())
                while orjson.loads(await ws.recv()).get("ref") != "j":
                    pass
            # Warm up (thread pool, imports) before the memory baseline.
            warm = await submit(alice, "flood", n=1000)
            assert (await follow(alice, warm))[0] == numbered(1000)
            rss_before = proc.memory_info().rss
            stop = asyncio.Event()
            sent: dict[int, float] = {}
            late: list[float] = []
            health: list[float] = []
            rss: list[int] = []

            async def chat() -> None:
                seq = 0
                while not stop.is_set():
                    sent[seq] = time.perf_counter()
                    frame = {"type": "publish", "room": "chat", "data": seq}
                    await bob.send(orjson.dumps(frame).decode())
                    seq += 1
                    await asyncio.sleep(0.01)
                frame = {"type": "publish", "room": "chat", "data": "end"}
                await bob.send(orjson.dumps(frame).decode())

            async def drain() -> None:  # bob reads his acks like any client
                while True:
                    await bob.recv()

            async def listen() -> None:
                while True:
                    frame = orjson.loads(await asyncio.wait_for(carol.recv(), TIMEOUT))
                    if frame.get("type") != "message":
                        continue
                    if frame["data"] == "end":
                        return
                    late.append(time.perf_counter() - sent[frame["data"]])

            async def probe() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert (await http.get("/healthz")).status_code == 200
                    health.append(time.perf_counter() - t0)
                    rss.append(proc.memory_info().rss)
                    await asyncio.sleep(0.02)

            probes = [asyncio.ensure_future(c) for c in (chat(), listen(), probe())]
            drainer = asyncio.ensure_future(drain())
            job_id = await submit(alice, "flood", n=n)
            outputs, frames, final = await follow(alice, job_id)
            stop.set()
            await asyncio.gather(*probes)
            drainer.cancel()
    finally:
        hub.signal()
        await asyncio.to_thread(hub.wait)
        hub.cleanup()
    assert final == {"type": "job.result", "job_id": job_id, "result": n}
    assert outputs == numbered(n)  # every one, in order, and alice was never closed
    assert frames <= n // 10, f"{frames} frames for {n} outputs: not coalesced"
    assert len(late) == len(sent) > 0  # the other room lost nothing
    p99 = sorted(late)[int(len(late) * 0.99)]
    # Generous (a shared CI machine); a stalled loop costs far more.
    assert p99 < 0.5 * FACTOR, f"other room p99 {p99 * 1000:.0f} ms"
    assert max(health) < 0.75 * FACTOR, f"/healthz took {max(health) * 1000:.0f} ms"
    growth = max(rss) - rss_before
    assert growth < 16 * 1024 * 1024, f"hub RSS grew {growth / 2**20:.1f} MiB"


async def test_a_thread_producer_blocks_while_the_hub_is_stalled(hub_server, ws_client):
    """The hub's loop stalls (the consumer): the job's ``ctx.output`` blocks, then resumes."""
    running = await hub_server(jobs=JOBS)
    buffer = running.hub.jobs.buffer
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood_counted")
        seen: list[Any] = []
        while not seen:  # it runs
            frame = orjson.loads(await alice.recv())
            if frame.get("type") == "job.output":
                seen.extend(frame["items"] if "items" in frame else [frame["data"]])
        before = jobs_fixtures.PRODUCED[job_id]
        time.sleep(0.3)  # noqa: ASYNC251 - stalls the in-process hub's loop on purpose
        stalled = jobs_fixtures.PRODUCED[job_id]
        # Nothing was delivered meanwhile: the job got at most the buffer's room ahead
        # (+1: an output accepted before ``before`` was read, not yet counted), then
        # blocked in ctx.output with the buffer full.
        assert stalled - before <= DEFAULT_MAX_EVENTS + 1
        assert buffer.pending(job_id) == DEFAULT_MAX_EVENTS and buffer.waiting == 1
        # The loop runs again: the buffer drains and the producer goes on past it.
        reader = asyncio.ensure_future(follow(alice, job_id, seen))
        while jobs_fixtures.PRODUCED[job_id] < stalled + 4 * DEFAULT_MAX_EVENTS:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert (await http.delete(f"/api/jobs/{job_id}")).status_code == 200
        outputs, _, final = await reader
    assert final["type"] == "job.cancelled"
    assert outputs == numbered(len(outputs)) and len(outputs) > stalled + DEFAULT_MAX_EVENTS
    assert buffer.waits >= 1 and buffer.high_water <= DEFAULT_MAX_EVENTS


async def test_a_process_producer_blocks_through_its_pipe(hub_server, tmp_path):
    """A ``cpu=True`` job: the relay blocks, the pipe fills, the child blocks."""
    running = await hub_server(jobs=JOBS)
    counter = tmp_path / "count"
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood_counted_cpu", counter=str(counter))
        seen: list[Any] = []
        while len(seen) < 64:  # it runs (and wrote its counter once)
            frame = orjson.loads(await asyncio.wait_for(alice.recv(), TIMEOUT * 2))
            if frame.get("type") == "job.output":
                seen.extend(frame["items"] if "items" in frame else [frame["data"]])
        before = int(counter.read_text())
        time.sleep(0.5)  # noqa: ASYNC251 - stalls the in-process hub's loop on purpose
        stalled = int(counter.read_text())
        # The buffer's room, what the pipe holds (64 KiB of small pickles) and the
        # counter's granularity: a few thousand at most, not the ~10^5 of a free run.
        assert stalled - before <= DEFAULT_MAX_EVENTS + 4096, (before, stalled)
        assert running.hub.jobs.buffer.waiting == 1  # the relay thread
        reader = asyncio.ensure_future(follow(alice, job_id, seen))
        while int(counter.read_text()) < stalled + 4 * DEFAULT_MAX_EVENTS:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert (await http.delete(f"/api/jobs/{job_id}")).status_code == 200
        outputs, _, final = await reader
    assert final["type"] == "job.cancelled"
    assert outputs == numbered(len(outputs)) and len(outputs) > stalled


async def test_async_jobs_await_room_and_a_sync_flood_on_the_loop_is_refused(hub_server):
    running = await hub_server(jobs=JOBS)
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood_async", n=20_000)
        outputs, frames, final = await follow(alice, job_id)
        assert final["type"] == "job.result" and outputs == numbered(20_000) and frames < 200
        # ctx.output (not awaited) from an async job cannot wait: past the slack it raises.
        job_id = await submit(alice, "flood_on_loop", n=100_000)
        outputs, _, final = await follow(alice, job_id)
    assert final["type"] == "job.failed" and final["error"]["type"] == "BufferFull"
    assert "use 'await ctx.aoutput(...)'" in final["error"]["message"]
    # What it emitted before the refusal was delivered, in order, and no more.
    assert outputs == list(range(len(outputs))) and len(outputs) <= SYNC_SLACK * DEFAULT_MAX_EVENTS


async def test_process_flood_and_event_log_stay_coherent(hub_server):
    running = await hub_server(jobs=JOBS)
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood_cpu", n=5000)
        outputs, _, final = await follow(alice, job_id)
    assert final["type"] == "job.result" and outputs == numbered(5000)
    async with httpx.AsyncClient(base_url=running.http) as http:
        events = (await http.get(f"/api/jobs/{job_id}/events")).json()
    # Bounded (one entry per output), the newest kept, ending with the result.
    assert len(events) == MAX_EVENTS_PER_JOB
    assert events[-1]["type"] == "job.result" and events[-1]["result"] == 5000
    logged = [e["data"] for e in events[:-1]]
    assert all(e["type"] == "job.output" for e in events[:-1])
    assert logged == numbered(5000)[-len(logged) :]


async def test_python_client_calls_on_output_once_per_item(hub_server):
    running = await hub_server(jobs=JOBS)
    seen: list[Any] = []
    async with HubClient(running.ws, client_id="alice") as client:
        handle = await client.submit("flood", {"n": 5000}, on_output=seen.append)
        assert await handle.result(TIMEOUT * 2) == 5000
    assert seen == numbered(5000) and handle.outputs == seen


async def test_cli_follow_prints_every_coalesced_output(hub_server):
    running = await hub_server(jobs=JOBS)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wirehub", "jobs", "submit", "flood"),
        *("--arg", "n=1000", "--follow", "--url", running.ws),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100"},
    )
    out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    assert proc.returncode == 0, errs
    assert out.decode().splitlines()[-1] == "1000"
    printed = [line for line in errs.decode().splitlines() if line.startswith("{'i': ")]
    assert printed == [f"{{'i': {i}}}" for i in range(1000)]


@pytest.mark.usefixtures("redis_url")
async def test_celery_flood_is_coalesced_and_complete(celery_worker, hub_server):
    from wirehub.settings import load_settings

    running = await hub_server(load_settings(celery_worker.config))
    n = 20_000
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood", n=n)
        outputs, frames, final = await follow(alice, job_id)
    assert final["type"] == "job.result" and outputs == numbered(n)
    assert frames <= n // 10
    buffer = running.hub.jobs.buffer
    assert buffer.high_water <= max(DEFAULT_MAX_EVENTS, MAX_BATCH_ITEMS)
    async with httpx.AsyncClient(base_url=running.http) as http:
        events = (await http.get(f"/api/jobs/{job_id}/events")).json()
    assert len(events) == MAX_EVENTS_PER_JOB and events[-1]["type"] == "job.result"
    assert [e["data"] for e in events[:-1]] == numbered(n)[-(len(events) - 1) :]


@pytest.mark.usefixtures("redis_url")
async def test_celery_worker_blocks_while_the_hub_is_stalled(celery_worker, hub_server, tmp_path):
    """The hub stops taking events: the worker gets no credit and the job blocks."""
    from wirehub.settings import load_settings

    running = await hub_server(load_settings(celery_worker.config))
    counter = tmp_path / "count"
    async with connect(running.ws, max_size=2**24) as alice:
        await alice.recv()
        job_id = await submit(alice, "flood_counted", counter=str(counter))
        seen: list[Any] = []
        while len(seen) < 64:
            frame = orjson.loads(await asyncio.wait_for(alice.recv(), TIMEOUT * 2))
            if frame.get("type") == "job.output":
                seen.extend(frame["items"] if "items" in frame else [frame["data"]])
        before = int(counter.read_text())
        # Under the worker's credit timeout (2 x worker_lease = 2 s in the tests).
        time.sleep(1.0)  # noqa: ASYNC251 - stalls the in-process hub's loop on purpose
        stalled = int(counter.read_text())
        # The worker's buffer, the window of unacknowledged batches and one batch in
        # hand; a free run would be far beyond.
        bound = DEFAULT_MAX_EVENTS + (CREDIT_WINDOW + 1) * MAX_BATCH_ITEMS + 64
        assert stalled - before <= bound, (before, stalled)
        reader = asyncio.ensure_future(follow(alice, job_id, seen))
        while int(counter.read_text()) < stalled + 2 * bound:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert (await http.delete(f"/api/jobs/{job_id}")).status_code == 200
        outputs, _, final = await reader
    assert final["type"] == "job.cancelled"
    assert outputs == numbered(len(outputs)) and len(outputs) > stalled
