"""Chunked uploads over WebSocket: the happy path with a job (both runners), resume, bad input."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from support import TIMEOUT


def blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


async def send_chunks(client, upload_id: str, data: bytes, chunk: int, start: int = 0) -> int:
    offset = start
    while offset < len(data):
        piece = data[offset : offset + chunk]
        await client.send_raw(piece)
        ack = await client.expect("upload.ack", upload_id=upload_id)
        offset += len(piece)
        assert ack["offset"] == offset
    return offset


async def test_upload_feeds_a_job_and_the_result_comes_back(jobs_hub, ws_client):
    data, sha = blob(2 * 1024 * 1024 + 123)
    alice = await ws_client(jobs_hub.ws, "alice")
    ready = await alice.request(
        "upload.start",
        name="photo.raw",
        size=len(data),
        sha256=sha,
        job="digest_upload",
        args={"label": "x"},
    )
    assert ready["type"] == "upload.ready" and ready["offset"] == 0
    assert ready["chunk_size"] == 1024 * 1024
    await send_chunks(alice, ready["upload_id"], data, ready["chunk_size"])
    complete = await alice.request("upload.finish", upload_id=ready["upload_id"])
    assert complete["type"] == "upload.complete" and complete["upload_id"] == ready["upload_id"]
    assert complete["size"] == len(data) and complete["sha256"] == sha
    result = await alice.wait_for("job.result", job_id=complete["job_id"], timeout=TIMEOUT * 2)
    assert result["result"] == {"label": "x", "name": "photo.raw", "size": len(data), "sha256": sha}


async def test_resume_after_a_disconnect(jobs_hub, ws_client):
    data, sha = blob(5000)
    first = await ws_client(jobs_hub.ws, "alice")
    ready = await first.request("upload.start", name="doc.txt", size=len(data), sha256=sha)
    upload_id = ready["upload_id"]
    await send_chunks(first, upload_id, data[:2048], 1024)
    await first.close()
    again = await ws_client(jobs_hub.ws, "alice")
    resumed = await again.request(
        "upload.start", name="doc.txt", size=len(data), sha256=sha, upload_id=upload_id
    )
    assert resumed["offset"] == 2048 and resumed["upload_id"] == upload_id
    await send_chunks(again, upload_id, data, 1024, start=2048)
    complete = await again.request("upload.finish", upload_id=upload_id)
    assert complete["type"] == "upload.complete" and complete["job_id"] is None
    # A finished upload cannot be resumed.
    err = await again.request(
        "upload.start", name="doc.txt", size=len(data), sha256=sha, upload_id=upload_id
    )
    assert err["code"] == "not_found"


@pytest.fixture
async def small_hub(hub_server, tmp_path):
    uploads = {"dir": str(tmp_path), "max_size": 4096, "chunk_size": 1024, "max_concurrent": 2}
    return await hub_server(jobs={"modules": ["jobs_fixtures"]}, uploads=uploads)


def partial_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "partial").iterdir())


async def test_size_over_the_limit_before_a_byte(small_hub, ws_client, tmp_path):
    alice = await ws_client(small_hub.ws)
    err = await alice.request("upload.start", name="big", size=4097, sha256="0" * 64)
    assert err["code"] == "too_large"
    assert err["message"] == "upload of 4097 bytes exceeds the limit of 4096 bytes"
    assert partial_files(tmp_path) == []


async def test_more_bytes_than_announced(small_hub, ws_client):
    data, sha = blob(1500)
    alice = await ws_client(small_hub.ws)
    ready = await alice.request("upload.start", name="f", size=len(data), sha256=sha)
    await send_chunks(alice, ready["upload_id"], data[:1000], 1024)
    await alice.send_raw(b"x" * 600)
    err = await alice.expect("error")
    assert err["code"] == "too_large" and err["upload_id"] == ready["upload_id"]
    assert "goes past the announced size: 1000 of 1500 bytes received, 500 left" in err["message"]
    await alice.send_raw(b"x" * 1025)
    err = await alice.expect("error")
    assert err["message"] == "chunk of 1025 bytes exceeds the chunk size of 1024"
    # The upload goes on: the right bytes still complete it.
    await send_chunks(alice, ready["upload_id"], data, 1024, start=1000)
    assert (await alice.request("upload.finish", upload_id=ready["upload_id"]))["job_id"] is None


async def test_checksum_mismatch_discards_the_file(small_hub, ws_client, tmp_path):
    data, sha = blob(1500)
    alice = await ws_client(small_hub.ws)
    ready = await alice.request("upload.start", name="f", size=len(data), sha256=sha)
    assert len(partial_files(tmp_path)) == 2  # bytes + what was announced
    corrupted = bytes([data[0] ^ 0xFF]) + data[1:]  # always differs from the original
    await send_chunks(alice, ready["upload_id"], corrupted, 1024)
    err = await alice.request("upload.finish", upload_id=ready["upload_id"])
    assert err["code"] == "bad_request" and err["message"].startswith("checksum mismatch")
    assert partial_files(tmp_path) == []
    err = await alice.request("upload.finish", upload_id=ready["upload_id"])
    assert err["code"] == "not_found"


async def test_binary_frame_without_an_upload(small_hub, ws_client):
    alice = await ws_client(small_hub.ws)
    await alice.send_raw(b"\x00\x01")
    err = await alice.expect("error")
    assert err == {
        "type": "error",
        "code": "bad_request",
        "message": "binary frame received but no upload is in progress",
    }
    assert (await alice.request("ping"))["type"] == "pong"


async def test_finish_before_all_bytes(small_hub, ws_client):
    data, sha = blob(3000)
    alice = await ws_client(small_hub.ws)
    ready = await alice.request("upload.start", name="f", size=len(data), sha256=sha)
    await send_chunks(alice, ready["upload_id"], data[:1024], 1024)
    err = await alice.request("upload.finish", upload_id=ready["upload_id"])
    assert err["code"] == "bad_request"
    assert err["message"] == "upload incomplete: 1024 of 3000 bytes received"
    assert err["offset"] == 1024


async def test_unknown_upload_id_and_unknown_job(small_hub, ws_client):
    alice = await ws_client(small_hub.ws)
    unknown = "f" * 32
    err = await alice.request("upload.start", name="f", size=1, sha256="0" * 64, upload_id=unknown)
    assert err["code"] == "not_found" and err["message"] == f"unknown upload_id '{unknown}'"
    err = await alice.request("upload.finish", upload_id=unknown)
    assert err["code"] == "not_found"
    err = await alice.request("upload.start", name="f", size=1, sha256="0" * 64, job="nope")
    assert err["code"] == "not_found" and err["message"] == "unknown job 'nope'"
    err = await alice.request(
        "upload.start", name="f", size=1, sha256="0" * 64, job="digest_upload", args={"z": 1}
    )
    assert err["code"] == "bad_request" and "z: Extra inputs are not permitted" in err["message"]


async def test_concurrent_uploads_per_connection(small_hub, ws_client):
    alice = await ws_client(small_hub.ws)
    for _ in range(2):
        assert (await alice.request("upload.start", name="f", size=10, sha256="0" * 64))[
            "type"
        ] == "upload.ready"
    err = await alice.request("upload.start", name="f", size=10, sha256="0" * 64)
    assert err["code"] == "limit_exceeded"
    # Another connection has its own allowance.
    bob = await ws_client(small_hub.ws)
    assert (await bob.request("upload.start", name="f", size=10, sha256="0" * 64))[
        "type"
    ] == "upload.ready"
