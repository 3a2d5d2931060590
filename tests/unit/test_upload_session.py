"""Upload rules without sockets: parse_start, chunks, finish, resume; the spool store."""

from __future__ import annotations

import hashlib
import os

import pytest

from wirehub.errors import BadRequest, TooLarge
from wirehub.uploads.session import MAX_CHUNK, UploadSession, parse_start
from wirehub.uploads.stores import SpoolStore

DATA = b"hello wirehub" * 100
SHA = hashlib.sha256(DATA).hexdigest()


def start(**fields):
    frame = {"name": "a.bin", "size": len(DATA), "sha256": SHA, **fields}
    return parse_start(frame, max_size=1 << 20)


def test_parse_start_accepts_a_good_frame():
    request = start(job="digest", args={"x": 1})
    assert (request.name, request.size, request.job, request.args) == (
        "a.bin",
        len(DATA),
        "digest",
        {"x": 1},
    )
    assert start(sha256=SHA.upper()).sha256 == SHA


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "../etc/passwd"}, "field 'name' must be a plain file name"),
        ({"name": ""}, "field 'name' must be a file name of 1-255 characters"),
        ({"name": ".."}, "field 'name' must be a plain file name"),
        ({"size": -1}, "field 'size' must be a non-negative integer (bytes)"),
        ({"size": True}, "field 'size' must be a non-negative integer (bytes)"),
        ({"sha256": "abc"}, "field 'sha256' must be the file's SHA-256 as 64 hex digits"),
        ({"job": 3}, "field 'job' must be a job name"),
        ({"args": [1]}, "field 'args' must be an object"),
        ({"upload_id": "x"}, "field 'upload_id' must be an id given by 'upload.ready'"),
    ],
)
def test_parse_start_rejects_bad_fields(fields, message):
    with pytest.raises(BadRequest) as info:
        start(**fields)
    assert str(info.value).startswith(message)


def test_size_over_the_limit_is_too_large():
    with pytest.raises(TooLarge) as info:
        parse_start({"name": "big", "size": 2049, "sha256": SHA}, max_size=2048)
    assert str(info.value) == "upload of 2049 bytes exceeds the limit of 2048 bytes"
    assert info.value.code == "too_large"


def test_chunks_then_finish():
    session = UploadSession.new(start(), chunk_size=500)
    for i in range(0, len(DATA), 500):
        chunk = DATA[i : i + 500]
        session.check_chunk(len(chunk))
        session.advance(chunk)
    assert session.offset == len(DATA) and session.remaining == 0
    session.finish()
    assert session.finished
    with pytest.raises(BadRequest, match="already complete"):
        session.check_chunk(1)


def test_chunk_limits():
    session = UploadSession.new(start(), chunk_size=500)
    with pytest.raises(TooLarge, match="chunk of 501 bytes exceeds the chunk size of 500"):
        session.check_chunk(501)
    with pytest.raises(BadRequest, match="empty binary frame"):
        session.check_chunk(0)
    assert UploadSession.new(start(), chunk_size=10 * MAX_CHUNK).chunk_size == MAX_CHUNK


def test_more_bytes_than_announced():
    session = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    session.advance(DATA[:-3])
    with pytest.raises(TooLarge) as info:
        session.check_chunk(4)
    assert str(info.value) == (
        f"chunk of 4 bytes goes past the announced size: {len(DATA) - 3} of {len(DATA)} "
        "bytes received, 3 left"
    )
    assert session.offset == len(DATA) - 3  # nothing was counted


def test_finish_before_all_bytes():
    session = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    session.advance(DATA[:10])
    with pytest.raises(BadRequest) as info:
        session.finish()
    assert str(info.value) == f"upload incomplete: 10 of {len(DATA)} bytes received"
    assert info.value.fields["offset"] == 10 and not session.finished


def test_checksum_mismatch():
    session = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    session.advance(DATA[:-1] + b"X")
    with pytest.raises(BadRequest, match="checksum mismatch: announced sha256"):
        session.finish()


def test_resume_continues_the_hash():
    session = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    restored = UploadSession.from_meta(session.meta())
    restored.resume(100, hashlib.sha256(DATA[:100]))
    assert restored.matches(start()) and not restored.matches(start(name="b.bin"))
    restored.advance(DATA[100:])
    restored.finish()
    with pytest.raises(BadRequest, match="more than announced"):
        restored.resume(len(DATA) + 1, hashlib.sha256())


def test_spool_store_roundtrip_and_expiry(tmp_path):
    store = SpoolStore(tmp_path, expire_after=60, keep_after=60)
    store.prepare()
    session = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    store.create(session.meta())
    store.write(session.upload_id, 0, DATA[:100], session.hasher)
    session.advance(DATA[:100], hashed=True)
    meta, length, hasher = store.load(session.upload_id)
    assert meta["name"] == "a.bin" and length == 100
    assert hasher.hexdigest() == hashlib.sha256(DATA[:100]).hexdigest()
    store.write(session.upload_id, 100, DATA[100:], session.hasher)
    session.advance(DATA[100:], hashed=True)
    session.finish()
    path = store.finish(session.upload_id, "a.bin")
    assert path.read_bytes() == DATA and store.load(session.upload_id) is None
    # An abandoned partial upload and an old complete one both expire.
    other = UploadSession.new(start(), chunk_size=MAX_CHUNK)
    store.create(other.meta())
    old = os.path.getmtime(path.parent) - 120
    os.utime(store.partial / f"{other.upload_id}.part", (old, old))
    os.utime(path.parent, (old, old))
    assert store.expire() == 2
    assert store.load(other.upload_id) is None and not path.exists()
