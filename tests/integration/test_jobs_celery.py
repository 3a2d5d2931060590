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


async def test_two_prefixes_on_one_redis_never_see_each_others_jobs(
    celery_worker, redis_url, hub_server, ws_client, tmp_path
):
    """Hub A (prefix ``wirehub``) and hub B (prefix ``pfx``), each with its worker, one Redis."""
    import redis

    other = write_worker_config(tmp_path / "pfx.toml", redis_url)  # same queue name
    with other.open("a") as f:
        f.write('[redis]\nprefix = "pfx"\n')
    worker_b = await asyncio.to_thread(spawn_worker, other)
    try:
        hub_a = await hub_server(load_settings(celery_worker.config))
        hub_b = await hub_server(load_settings(other))
        watch_a = await ws_client(hub_a.ws, "watch-a")
        await watch_a.request("join", room="$jobs")
        alice = await ws_client(hub_a.ws, "alice")
        bob = await ws_client(hub_b.ws, "bob")
        job_a = (await alice.request("job.submit", job="count", args={"n": 2}))["job_id"]
        job_b = (await bob.request("job.submit", job="count", args={"n": 3}))["job_id"]
        assert (await alice.wait_for("job.result", job_id=job_a))["result"] == 3
        assert (await bob.wait_for("job.result", job_id=job_b))["result"] == 6
        # Hub A's dashboard feed saw only its own job, through to its result.
        seen = []
        while not seen or seen[-1] != ("job.result", job_a):
            data = (await watch_a.wait_for("message", room="$jobs"))["data"]
            seen.append((data["type"], data["job_id"]))
        assert {job_id for _, job_id in seen} == {job_a}
        async with (
            httpx.AsyncClient(base_url=hub_a.http) as http_a,
            httpx.AsyncClient(base_url=hub_b.http) as http_b,
        ):
            assert [j["job_id"] for j in (await http_a.get("/api/jobs")).json()] == [job_a]
            assert [j["job_id"] for j in (await http_b.get("/api/jobs")).json()] == [job_b]
            for http, foreign in ((http_a, job_b), (http_b, job_a)):
                assert (await http.get(f"/api/jobs/{foreign}")).status_code == 404
                assert (await http.get(f"/api/jobs/{foreign}/events")).status_code == 404
            info_b = (await http_b.get(f"/api/jobs/{job_b}")).json()
            events_b = (await http_b.get(f"/api/jobs/{job_b}/events")).json()
        # B's job ran on B's worker; its events are B's own, under B's keys.
        assert info_b["worker"].endswith(f"-{worker_b.proc.pid}")
        assert {e["job_id"] for e in events_b} == {job_b} and events_b[-1]["type"] == "job.result"
        client = redis.Redis.from_url(redis_url)
        try:
            keys_b = {k.decode() for k in client.scan_iter(match=f"*{job_b}*")}
            keys_a = {k.decode() for k in client.scan_iter(match=f"*{job_a}*")}
        finally:
            client.close()
        assert keys_b and all(k.startswith("pfx:") for k in keys_b), keys_b
        assert keys_a and all(k.startswith("wirehub:") for k in keys_a), keys_a
    finally:
        await asyncio.to_thread(worker_b.stop)
