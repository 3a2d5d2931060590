"""Jobs end to end, the same suite against the embedded and the Celery runner.

Real hub on a free port, real WebSocket clients; for ``celery`` a real
redis-server and a real ``wirehub worker`` subprocess (tests/redis_support.py).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from support import TIMEOUT

pytestmark = pytest.mark.usefixtures("jobs_runner")


async def test_ws_submit_streams_progress_output_and_result(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    accepted = await alice.request("job.submit", job="count", args={"n": 3})
    assert accepted["type"] == "job.accepted" and accepted["job"] == "count"
    job_id = accepted["job_id"]
    outputs, progress = [], []
    while True:
        frame = await alice.recv()
        assert frame["job_id"] == job_id, frame
        if frame["type"] == "job.output":
            # Consecutive outputs may come coalesced in one frame (``items``).
            outputs.extend(frame["items"] if "items" in frame else [frame["data"]])
        elif frame["type"] == "job.progress":
            progress.append((frame["progress"], frame["message"]))
        else:
            assert frame == {"type": "job.result", "job_id": job_id, "result": 6}
            break
    assert outputs == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert progress[-1] == (1.0, "step 3 of 3")
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        info = (await http.get(f"/api/jobs/{job_id}")).json()
    assert info["state"] == "succeeded" and info["result"] == 6 and info["progress"] == 1.0
    assert info["attempts"] == 1 and info["client_id"] == "alice"
    assert info["started_at"] >= info["created_at"] and info["duration"] >= 0


async def test_http_submit_then_poll_and_list_by_state(jobs_hub):
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        resp = await http.post("/api/jobs", json={"job": "add", "args": {"a": 2, "b": "3"}})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        info = await wait_state(http, job_id, "succeeded")
        assert info["result"]["sum"] == 5
        assert info["args"] == {"a": 2, "b": 3}
        listed = (await http.get("/api/jobs", params={"state": "succeeded"})).json()
        assert [j["job_id"] for j in listed] == [job_id]
        assert (await http.get("/api/jobs", params={"state": "running"})).json() == []
        assert (await http.get("/api/jobs", params={"state": "nope"})).status_code == 422
        events = (await http.get(f"/api/jobs/{job_id}/events")).json()
        assert [e["type"] for e in events][-1] == "job.result"


async def test_unknown_job_and_bad_arguments(jobs_hub, ws_client):
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        resp = await http.post("/api/jobs", json={"job": "nope", "args": {}})
        assert resp.status_code == 404
        assert resp.json()["detail"]["message"] == "unknown job 'nope'"
        resp = await http.get("/api/jobs/doesnotexist")
        assert resp.status_code == 404
        assert resp.json()["detail"]["message"] == "unknown job id 'doesnotexist'"
        resp = await http.post("/api/jobs", json={"job": "add", "args": {"a": "x", "c": 1}})
        assert resp.status_code == 422
        detail = resp.json()["detail"]
        assert detail["code"] == "bad_request"
        assert {e["field"] for e in detail["errors"]} == {"a", "c"}
        assert detail["message"].startswith("invalid arguments for job 'add': a: ")
        resp = await http.get("/api/jobs/0123456789abcdef")
        assert resp.status_code == 404
        assert (await http.get("/api/jobs")).json() == []
    bob = await ws_client(jobs_hub.ws, "bob")
    err = await bob.request("job.submit", job="nope")
    assert err["type"] == "error" and err["code"] == "not_found"
    err = await bob.request("job.submit", job="add", args={"b": 1})
    assert err["code"] == "bad_request" and "a: Field required" in err["message"]
    err = await bob.request("job.submit", job="add", args=[1, 2])
    assert err["code"] == "bad_request" and err["message"] == "job 'add': 'args' must be an object"
    err = await bob.request("job.cancel", job_id="missing")
    assert err["code"] == "not_found"
    assert (await bob.request("ping"))["type"] == "pong"  # the connection goes on


async def test_job_that_raises_fails_cleanly(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = (await alice.request("job.submit", job="boom", args={"message": "disk on fire"}))[
        "job_id"
    ]
    failed = await alice.expect("job.failed", job_id=job_id)
    assert failed["state"] == "failed"
    assert failed["error"] == {"type": "ValueError", "message": "disk on fire"}
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        info = (await http.get(f"/api/jobs/{job_id}")).json()
    assert info["state"] == "failed" and info["error"]["type"] == "ValueError"


async def test_job_over_its_timeout_is_timed_out(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = (await alice.request("job.submit", job="sleepy"))["job_id"]
    failed = await alice.wait_for("job.failed", job_id=job_id)
    assert failed["state"] == "timed_out"
    assert failed["error"]["type"] == "TimeoutError"
    assert "exceeded its timeout of 0.5 s" in failed["error"]["message"]


async def test_retry_after_an_exception(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = (await alice.request("job.submit", job="flaky"))["job_id"]
    result = await alice.wait_for("job.result", job_id=job_id)
    assert result["result"] == {"attempt": 2}
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        assert (await http.get(f"/api/jobs/{job_id}")).json()["attempts"] == 2


async def test_cancel_running_job_cooperatively(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = (await alice.request("job.submit", job="until_cancelled"))["job_id"]
    await alice.wait_for("job.output", job_id=job_id, data="started")
    reply = await alice.request("job.cancel", job_id=job_id)
    assert reply == {**reply, "type": "job.cancelled", "job_id": job_id, "state": "cancelled"}
    event = await alice.wait_for("job.cancelled", job_id=job_id)
    assert event["state"] == "cancelled"
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        assert (await http.get(f"/api/jobs/{job_id}")).json()["state"] == "cancelled"
        # A finished job cannot be cancelled again.
        assert (await http.delete(f"/api/jobs/{job_id}")).status_code == 409


async def test_cancel_ignored_then_hard_stop(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = (await alice.request("job.submit", job="stubborn"))["job_id"]
    await alice.wait_for("job.output", job_id=job_id, data="started")
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=jobs_hub.http, timeout=TIMEOUT * 2) as http:
        info = (await http.delete(f"/api/jobs/{job_id}")).json()
    assert info["state"] == "cancelled"
    # The grace period (0.5 s in these tests) passed, then the job was stopped.
    assert 0.4 < loop.time() - started < 4
    event = await alice.wait_for("job.cancelled", job_id=job_id)
    assert event["error"]["type"] == "Cancelled"


async def test_cancel_queued_job_removes_it(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    # One slot (local concurrency=1, one solo Celery worker): the second job waits.
    blocker = (await alice.request("job.submit", job="until_cancelled"))["job_id"]
    await alice.wait_for("job.output", job_id=blocker, data="started")
    queued = (await alice.request("job.submit", job="echo", args={"value": 1}))["job_id"]
    async with httpx.AsyncClient(base_url=jobs_hub.http) as http:
        assert (await http.get(f"/api/jobs/{queued}")).json()["state"] == "queued"
        info = (await http.delete(f"/api/jobs/{queued}")).json()
        assert info["state"] == "cancelled" and info["started_at"] is None
        await alice.wait_for("job.cancelled", job_id=queued)
        assert (await http.delete(f"/api/jobs/{blocker}")).json()["state"] == "cancelled"
        # The cancelled job never runs, even once a slot is free.
        done = await alice.request("job.submit", job="echo", args={"value": 2})
        await alice.wait_for("job.result", job_id=done["job_id"])
        info = (await http.get(f"/api/jobs/{queued}")).json()
        assert info["state"] == "cancelled" and info["started_at"] is None


async def test_watchers_in_the_job_room_and_recovery(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    dashboard = await ws_client(jobs_hub.ws, "dashboard")
    await dashboard.request("join", room="$jobs")
    job_id = (await alice.request("job.submit", job="count", args={"n": 2}))["job_id"]
    await alice.wait_for("job.result", job_id=job_id)
    summary = await dashboard.wait_for("message", room="$jobs")
    assert summary["data"]["job_id"] == job_id and summary["data"]["type"] == "job.queued"
    while summary["data"]["type"] != "job.result":
        summary = await dashboard.wait_for("message", room="$jobs")
    assert "result" not in summary["data"]  # summaries stay small
    # A client that (re)joins the job's room with since=0 recovers every event.
    late = await ws_client(jobs_hub.ws, "late")
    joined = await late.request("join", room=f"$job:{job_id}", since=0)
    assert joined["recovered"] is True
    kinds, outputs = [], []
    while not kinds or kinds[-1] != "job.result":
        msg = await late.expect("message", room=f"$job:{job_id}")
        kinds.append(msg["data"]["type"])
        if kinds[-1] == "job.output":
            data = msg["data"]
            outputs.extend(data["items"] if "items" in data else [data["data"]])
    assert outputs == [{"i": 1}, {"i": 2}] and kinds[-1] == "job.result"
    assert msg["data"]["result"] == 3


async def test_submit_from_code(jobs_hub, ws_client):
    alice = await ws_client(jobs_hub.ws, "alice")
    job_id = await jobs_hub.hub.jobs.submit("echo", {"value": [1, 2]}, client_id="alice")
    result = await alice.wait_for("job.result", job_id=job_id)
    assert result["result"] == [1, 2]


async def wait_state(http: httpx.AsyncClient, job_id: str, state: str) -> dict:
    deadline = asyncio.get_running_loop().time() + TIMEOUT * 2
    while True:
        info = (await http.get(f"/api/jobs/{job_id}")).json()
        if info["state"] == state:
            return info
        assert asyncio.get_running_loop().time() < deadline, info
        await asyncio.sleep(0.05)
