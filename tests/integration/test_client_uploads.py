"""Client uploads stream from disk: memory stays bounded whatever the file's size.

The upload test runs the client in its own process (a real ``python``, the way a
script would) so that its peak RSS is its own, not the hub's: it uploads a file
several times larger than the client's allowance and reports how much its
high-water mark grew during the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import pytest

from support import TIMEOUT
from wirehub.client import UploadSource

MiB = 1024 * 1024
#: The file uploaded: far larger than what the client may hold at once.
FILE_SIZE = 40 * MiB
#: The client's allowance: a window of 4 chunks of 1 MiB, one hashing block, slack
#: for the interpreter's allocator. Reading the whole file would add FILE_SIZE.
RSS_GROWTH_LIMIT = 14 * MiB

UPLOADER = """
import asyncio, re, sys
from wirehub.client import HubClient

def peak():
    # VmHWM: this process image's peak RSS (ru_maxrss would count the forking parent's).
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

async def main(url, path):
    async with HubClient(url, request_timeout=float(sys.argv[3])) as hub:
        await hub.ping()
        before = peak()
        done = await hub.upload(path)
        print(repr((before, peak(), done["size"], done["sha256"])))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def big_file(path: Path, size: int) -> str:
    """Write ``size`` bytes (a random MiB repeated) and return their sha256."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's VmHWM")
async def test_a_large_upload_streams_from_disk_in_bounded_memory(hub_server, tmp_path):
    running = await hub_server(
        stats_interval=0,
        uploads={"dir": str(tmp_path / "spool"), "chunk_size": MiB},
        # Default limits: 40 MiB is past the 32 MiB byte burst, so the chunks beyond it
        # are paced by the 16 MiB/s byte rate, never refused.
    )
    path = tmp_path / "large.bin"
    sha256 = big_file(path, FILE_SIZE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        UPLOADER,
        running.ws,
        str(path),
        str(TIMEOUT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 6 * TIMEOUT)
    assert proc.returncode == 0, err.decode()
    before, after, size, got_sha = eval(out.decode())  # a tuple of ints and a str
    assert (size, got_sha) == (FILE_SIZE, sha256)  # the hub verified every byte
    growth = after - before
    assert growth < RSS_GROWTH_LIMIT, f"client peak RSS grew {growth / MiB:.1f} MiB"
    stored = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
    assert [p.stat().st_size for p in stored] == [FILE_SIZE]


async def test_a_file_source_is_hashed_and_read_one_chunk_at_a_time(tmp_path):
    path = tmp_path / "data.bin"
    data = os.urandom(3 * MiB + 5)
    path.write_bytes(data)
    source = UploadSource(path)
    await source.prepare()
    assert (source.name, source.size) == ("data.bin", len(data))
    assert source.sha256 == hashlib.sha256(data).hexdigest()
    chunks = []
    offset = 0
    while offset < source.size:
        chunk = await source.read(offset, 64 * 1024)
        chunks.append(chunk)
        offset += len(chunk)
    source.close()
    assert b"".join(chunks) == data and source.largest_read == 64 * 1024
    small = UploadSource(b"abc", name="abc.txt")
    await small.prepare()
    assert await small.read(1, 100) == b"bc" and await small.read(3, 100) == b""
