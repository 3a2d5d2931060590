"""``wirehub jobs submit --follow`` and ``wirehub upload --job`` against a live hub."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

import orjson

from support import TIMEOUT


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100"},
    )
    out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    return proc.returncode or 0, out.decode(), errs.decode()


async def test_jobs_submit_follow_prints_the_result(hub_server):
    running = await hub_server(jobs={"modules": ["jobs_fixtures"]})
    code, out, errs = await cli(
        "jobs", "submit", "count", "--arg", "n=4", "--follow", "--url", running.ws
    )
    assert code == 0, errs
    assert out.splitlines()[-1] == "10"
    assert "accepted" in errs
    code, out, errs = await cli("jobs", "submit", "boom", "--follow", "--url", running.ws)
    assert code == 1 and "job failed" in errs and "kaput" in errs
    code, out, errs = await cli("jobs", "submit", "add", "--arg", "b=1", "--url", running.ws)
    assert code == 1 and "bad_request" in errs and "a: Field required" in errs


async def test_upload_runs_the_job_and_prints_its_result(hub_server, tmp_path):
    running = await hub_server(
        jobs={"modules": ["jobs_fixtures"]},
        uploads={"dir": str(tmp_path / "spool"), "chunk_size": 64 * 1024},
    )
    data = os.urandom(300_000)
    path = tmp_path / "sample.bin"
    path.write_bytes(data)
    code, out, errs = await cli(
        "upload", str(path), "--job", "digest_upload", "--arg", "label=cli", "--url", running.ws
    )
    assert code == 0, errs
    result = orjson.loads(out.splitlines()[-1])
    assert result == {
        "label": "cli",
        "name": "sample.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
