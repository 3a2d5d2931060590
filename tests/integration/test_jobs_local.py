"""What only the embedded runner does: threads, processes, concurrency, result TTL."""

from __future__ import annotations

import asyncio
import os

import httpx

from support import TIMEOUT

JOBS = {"modules": ["jobs_fixtures"], "cancel_grace": 0.5}


async def test_sync_job_in_a_thread_and_cpu_job_in_a_process(hub_server, ws_client):
    running = await hub_server(jobs=JOBS)
    alice = await ws_client(running.ws, "alice")
    thread_job = (await alice.request("job.submit", job="add", args={"a": 1}))["job_id"]
    cpu_job = (await alice.request("job.submit", job="cpu_square", args={"n": 7}))["job_id"]
    results, messages = {}, []
    while len(results) < 2:
        frame = await alice.recv(timeout=TIMEOUT * 2)
        if frame["type"] == "job.progress":
            messages.append(frame["message"])
        else:
            assert frame["type"] == "job.result", frame
            results[frame["job_id"]] = frame["result"]
    assert messages == ["squaring"]
    assert results[thread_job]["pid"] == os.getpid()
    assert results[cpu_job]["square"] == 49 and results[cpu_job]["pid"] != os.getpid()


async def test_cpu_job_deaf_to_cancel_is_killed(hub_server, ws_client):
    running = await hub_server(jobs=JOBS)
    alice = await ws_client(running.ws, "alice")
    job_id = (await alice.request("job.submit", job="cpu_spin"))["job_id"]
    await alice.wait_for("job.output", job_id=job_id, data="started", timeout=TIMEOUT * 2)
    reply = await alice.request("job.cancel", job_id=job_id, timeout=TIMEOUT * 2)
    assert reply["state"] == "cancelled"
    # The process is gone: no result ever arrives.
    await alice.wait_for("job.cancelled", job_id=job_id)
    await alice.no_frame(0.3)


async def test_concurrency_limit_queues_the_rest(hub_server, ws_client):
    running = await hub_server(jobs={**JOBS, "concurrency": 2})
    alice = await ws_client(running.ws, "alice")
    ids = [(await alice.request("job.submit", job="until_cancelled"))["job_id"] for _ in range(3)]
    await alice.wait_for("job.output", job_id=ids[0])
    await alice.wait_for("job.output", job_id=ids[1])
    async with httpx.AsyncClient(base_url=running.http) as http:
        states = [(await http.get(f"/api/jobs/{i}")).json()["state"] for i in ids]
        assert states == ["running", "running", "queued"]
        await http.delete(f"/api/jobs/{ids[0]}")
        # The freed slot goes to the queued job.
        await alice.wait_for("job.output", job_id=ids[2])
        running_now = (await http.get("/api/jobs", params={"state": "running"})).json()
        assert sorted(j["job_id"] for j in running_now) == sorted(ids[1:])


async def test_results_expire_after_their_ttl(hub_server, ws_client):
    running = await hub_server(jobs={**JOBS, "result_ttl": 0.3})
    alice = await ws_client(running.ws, "alice")
    job_id = (await alice.request("job.submit", job="echo", args={"value": 1}))["job_id"]
    await alice.wait_for("job.result", job_id=job_id)
    async with httpx.AsyncClient(base_url=running.http) as http:
        assert (await http.get(f"/api/jobs/{job_id}")).status_code == 200
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while (await http.get(f"/api/jobs/{job_id}")).status_code == 200:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        assert (await http.get(f"/api/jobs/{job_id}")).json()["detail"]["code"] == "not_found"


async def test_shutdown_cancels_running_and_queued_jobs(hub_server, ws_client):
    running = await hub_server(jobs={**JOBS, "concurrency": 1})
    alice = await ws_client(running.ws, "alice")
    first = (await alice.request("job.submit", job="stubborn"))["job_id"]
    await alice.wait_for("job.output", job_id=first)
    second = await running.hub.jobs.submit("echo", {"value": 1})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await running.stop()
    assert loop.time() - started < 4
    records = {r.job_id: r for r in await running.hub.jobs.list()}
    assert records[first].state == "cancelled" and records[second].state == "cancelled"
    assert records[second].error["message"] == "the hub shut down before the job finished"
