"""Celery faults: a worker killed mid-job, and a hub restarted while jobs run."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from redis_support import spawn_worker, write_worker_config
from support import TIMEOUT
from wirehub.settings import load_settings


@pytest.fixture
def own_queue(redis_url, tmp_path):
    """A config with a queue of its own, so only this test's workers take its jobs."""
    return write_worker_config(
        tmp_path / "worker.toml", redis_url, queue=f"q-{uuid.uuid4().hex[:8]}"
    )


async def test_killed_worker_fails_the_job_with_a_clear_reason(own_queue, hub_server, ws_client):
    worker = spawn_worker(own_queue)
    try:
        running = await hub_server(load_settings(own_queue))
        alice = await ws_client(running.ws, "alice")
        job_id = (await alice.request("job.submit", job="steps"))["job_id"]
        await alice.wait_for("job.progress", job_id=job_id)
        worker.kill()
        failed = await alice.wait_for("job.failed", job_id=job_id, timeout=TIMEOUT * 2)
    finally:
        worker.stop()
    assert failed["state"] == "failed" and failed["error"]["type"] == "WorkerLost"
    assert "stopped: no heartbeat for 1 s" in failed["error"]["message"]
    async with httpx.AsyncClient(base_url=running.http) as http:
        info = (await http.get(f"/api/jobs/{job_id}")).json()
    assert info["state"] == "failed" and info["finished_at"] is not None


async def test_killed_worker_job_is_retried_on_another_worker(own_queue, hub_server, ws_client):
    first = spawn_worker(own_queue)
    second = None
    try:
        running = await hub_server(load_settings(own_queue))
        alice = await ws_client(running.ws, "alice")
        args = {"n": 4, "delay": 0.25}
        job_id = (await alice.request("job.submit", job="steps_retry", args=args))["job_id"]
        await alice.wait_for("job.progress", job_id=job_id)
        first.kill()
        second = await asyncio.to_thread(spawn_worker, own_queue)
        result = await alice.wait_for("job.result", job_id=job_id, timeout=TIMEOUT * 3)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert result["result"] == {"attempt": 2}


async def test_results_survive_a_hub_restart(celery_worker, redis_url, hub_server, ws_client):
    settings = load_settings(celery_worker.config)
    first = await hub_server(settings)
    alice = await ws_client(first.ws, "alice")
    job_id = (await alice.request("job.submit", job="steps", args={"n": 6, "delay": 0.15}))[
        "job_id"
    ]
    await alice.wait_for("job.progress", job_id=job_id)
    await first.stop()  # the job goes on in the worker
    second = await hub_server(settings)
    watcher = await ws_client(second.ws, "watcher")
    await watcher.request("join", room=f"$job:{job_id}")
    async with httpx.AsyncClient(base_url=second.http) as http:
        assert (await http.get(f"/api/jobs/{job_id}")).json()["state"] == "running"
        # The new hub relays the worker's events live...
        message = await watcher.expect("message", room=f"$job:{job_id}")
        assert message["data"]["type"] in ("job.progress", "job.result")
        while message["data"]["type"] != "job.result":
            message = await watcher.expect("message", room=f"$job:{job_id}")
        # ...and the result stays retrievable, with the full event log.
        info = (await http.get(f"/api/jobs/{job_id}")).json()
        assert info["state"] == "succeeded" and info["result"] == 6
        events = (await http.get(f"/api/jobs/{job_id}/events")).json()
    assert events[0]["type"] == "job.queued" and events[-1]["type"] == "job.result"
    assert sum(e["type"] == "job.progress" for e in events) == 6
