"""Grants cover every action: direct, job.submit, upload, a job's events and its cancel.

Real hub with the test jobs, real tokens; each refusal is ``error forbidden`` naming
the action and its target, and nothing happens behind it.
"""

from __future__ import annotations

import hashlib

import pytest

from security_support import jwt_auth, token
from support import TIMEOUT


@pytest.fixture
async def secured(hub_server, tmp_path):
    return await hub_server(
        auth=jwt_auth(),
        jobs={"modules": ["jobs_fixtures"], "concurrency": 2, "cancel_grace": 0.5},
        uploads={"dir": str(tmp_path / "spool")},
    )


async def connect(ws_client, running, sub, **claims):
    return await ws_client(f"{running.ws}?token={token(sub, **claims)}")


async def test_direct_needs_a_grant_for_the_recipient(secured, ws_client):
    alice = await connect(ws_client, secured, "alice", direct=["bob", "support:*"])
    bob = await connect(ws_client, secured, "bob")
    carol = await connect(ws_client, secured, "carol")

    assert (await alice.request("direct", to="bob", data="hi"))["type"] == "ack"
    assert (await bob.expect("direct"))["data"] == "hi"
    refused = await alice.request("direct", to="carol", data="spam")
    assert refused["code"] == "forbidden"
    assert refused["message"] == "not allowed to send a direct message to client 'carol'"
    assert refused["action"] == "direct" and refused["target"] == "carol"
    # No grant at all: bob may not answer.
    back = await bob.request("direct", to="alice", data="hello?")
    assert back["message"] == "not allowed to send a direct message to client 'alice'"
    await carol.no_frame()
    await alice.no_frame()


async def test_default_grants_apply_to_every_token(hub_server, ws_client):
    running = await hub_server(auth=jwt_auth(default_grants={"direct": ["*"]}))
    alice = await connect(ws_client, running, "alice")
    bob = await connect(ws_client, running, "bob")
    assert (await alice.request("direct", to="bob", data=1))["type"] == "ack"
    assert (await bob.expect("direct"))["data"] == 1


async def test_job_submit_needs_a_jobs_grant_for_that_name(secured, ws_client):
    alice = await connect(ws_client, secured, "alice", jobs=["add", "ech*"])
    accepted = await alice.request("job.submit", job="add", args={"a": 2, "b": 3})
    assert accepted["type"] == "job.accepted"
    assert (await alice.wait_for("job.result", job_id=accepted["job_id"]))["result"]["sum"] == 5

    refused = await alice.request("job.submit", job="boom")
    assert refused["code"] == "forbidden"
    assert refused["message"] == "not allowed to submit job 'boom'"
    assert refused["action"] == "job.submit" and refused["target"] == "boom"
    nobody = await connect(ws_client, secured, "nobody")
    assert (await nobody.request("job.submit", job="echo"))["message"] == (
        "not allowed to submit job 'echo'"
    )
    assert len(await secured.hub.jobs.list()) == 1  # the refused ones never queued


async def test_upload_needs_an_upload_grant_and_a_submit_grant_for_its_job(secured, ws_client):
    data = b"x" * 3000
    sha = hashlib.sha256(data).hexdigest()
    start = {"name": "doc.txt", "size": len(data), "sha256": sha}

    plain = await connect(ws_client, secured, "plain", upload=[""])  # uploads feeding no job
    assert (await plain.request("upload.start", **start))["type"] == "upload.ready"
    refused = await plain.request("upload.start", **start, job="digest_upload")
    assert refused["message"] == "not allowed to upload for job 'digest_upload'"

    nothing = await connect(ws_client, secured, "nothing")
    refused = await nothing.request("upload.start", **start)
    assert refused["code"] == "forbidden"
    assert refused["message"] == "not allowed to upload a file that feeds no job"

    half = await connect(ws_client, secured, "half", upload=["digest_upload"])
    refused = await half.request("upload.start", **start, job="digest_upload")
    assert refused["message"] == "not allowed to submit job 'digest_upload'"

    full = await connect(
        ws_client, secured, "full", upload=["digest_upload"], jobs=["digest_upload"]
    )
    ready = await full.request("upload.start", **start, job="digest_upload")
    assert ready["type"] == "upload.ready"
    await full.send_raw(data)
    await full.expect("upload.ack", offset=len(data))
    complete = await full.request("upload.finish", upload_id=ready["upload_id"])
    result = await full.wait_for("job.result", job_id=complete["job_id"], timeout=TIMEOUT * 2)
    assert result["result"]["sha256"] == sha


async def test_a_jobs_events_are_for_its_submitter_a_grant_or_an_admin(secured, ws_client):
    alice = await connect(ws_client, secured, "alice", jobs=["count"])
    job_id = (await alice.request("job.submit", job="count", args={"n": 2}))["job_id"]
    await alice.wait_for("job.result", job_id=job_id)

    # The submitter reads (and recovers) its own job's room without any system grant.
    joined = await alice.request("join", room=f"$job:{job_id}", since=0)
    assert joined["type"] == "joined" and joined["recovered"] is True
    replayed = [await alice.expect("message") for _ in range(joined["offset"])]
    assert replayed[-1]["data"]["type"] == "job.result"

    mallory = await connect(ws_client, secured, "mallory", rooms=["*"])
    refused = await mallory.request("join", room=f"$job:{job_id}")
    assert refused["code"] == "forbidden"
    assert refused["message"] == f"not allowed to read the events of job '{job_id}'"
    assert refused["action"] == "job.events" and refused["target"] == job_id
    refused = await mallory.request("join", room="$job:no-such-job", since=0)
    assert refused["message"] == "not allowed to read the events of job 'no-such-job'"
    assert "mallory" not in (await secured.hub.broker.members(f"$job:{job_id}"))

    watcher = await connect(ws_client, secured, "watcher", join=["$job:*"])
    assert (await watcher.request("join", room=f"$job:{job_id}"))["type"] == "joined"
    admin = await connect(ws_client, secured, "root", admin=True)
    assert (await admin.request("join", room=f"$job:{job_id}", since=0))["type"] == "joined"


async def test_only_the_submitter_or_an_admin_cancels_a_job(secured, ws_client):
    alice = await connect(ws_client, secured, "alice", jobs=["until_cancelled"])
    job_id = (await alice.request("job.submit", job="until_cancelled"))["job_id"]
    await alice.wait_for("job.output", job_id=job_id, data="started")

    mallory = await connect(ws_client, secured, "mallory", jobs=["*"])
    refused = await mallory.request("job.cancel", job_id=job_id)
    assert refused["code"] == "forbidden"
    assert refused["message"] == f"not allowed to cancel job '{job_id}'"
    assert (await secured.hub.jobs.get(job_id)).state == "running"

    cancelled = await alice.request("job.cancel", job_id=job_id)
    assert cancelled["type"] == "job.cancelled"
