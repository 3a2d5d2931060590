"""core.tokens without sockets: the revocation set's bounds and rules, the byte bucket."""

from __future__ import annotations

import pytest

from wirehub.core.ratelimit import FrameLimiter
from wirehub.core.tokens import Revocation, Revocations, TokenInfo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_jti_is_refused_until_its_expiry_then_forgotten():
    clock = Clock()
    revoked = Revocations(clock=clock)
    assert revoked.add(Revocation("jti", "t1", until=1010.0))
    token = TokenInfo("alice", jti="t1", exp=1010.0)
    assert revoked.refuses(token) == "token revoked"
    assert revoked.refuses(TokenInfo("alice", jti="t2")) is None
    clock.now = 1010.0
    assert revoked.refuses(token) is None
    assert len(revoked) == 0
    assert not revoked.add(Revocation("jti", "old", until=999.0))  # already over: not kept


def test_a_revoked_subject_refuses_tokens_issued_before_and_those_without_iat():
    revoked = Revocations(clock=Clock())
    revoked.add(Revocation("sub", "alice", until=2000.0, before=1000.0))
    assert revoked.refuses(TokenInfo("alice", iat=999.0)) == "subject revoked"
    assert revoked.refuses(TokenInfo("alice")) == "subject revoked"
    assert revoked.refuses(TokenInfo("alice", iat=1000.5)) is None
    assert revoked.refuses(TokenInfo("bob", iat=1.0)) is None


def test_revoking_again_keeps_the_wider_revocation():
    revoked = Revocations(clock=Clock())
    revoked.add(Revocation("sub", "alice", until=3000.0, before=1000.0))
    revoked.add(Revocation("sub", "alice", until=2000.0, before=1500.0))
    entry = next(iter(revoked))
    assert (entry.until, entry.before) == (3000.0, 1500.0)


def test_the_set_is_bounded_and_drops_the_entry_closest_to_expiry():
    clock = Clock()
    revoked = Revocations(max_entries=3, clock=clock)
    for i, until in enumerate((1500.0, 1100.0, 1900.0, 1700.0)):
        revoked.add(Revocation("jti", f"t{i}", until=until))
    assert len(revoked) == 3 and revoked.dropped == 1
    assert revoked.refuses(TokenInfo("x", jti="t1")) is None  # until 1100: dropped first
    assert all(revoked.refuses(TokenInfo("x", jti=f"t{i}")) for i in (0, 2, 3))
    # Many re-revocations of one id do not grow the heap without bound.
    for i in range(1000):
        revoked.add(Revocation("jti", "t0", until=1500.0 + i))
    assert len(revoked._heap) <= 2 * len(revoked) + 64


def test_revocations_round_trip_through_their_wire_form():
    rev = Revocation("sub", "alice", until=2000.0, before=1000.0)
    assert Revocation.from_dict(rev.to_dict()) == rev
    with pytest.raises(ValueError, match="kind must be 'jti' or 'sub'"):
        Revocation.from_dict({"kind": "user", "value": "x", "until": 1})


def test_frame_limiter_bytes_bucket_refuses_big_frames_and_names_the_limit():
    limiter = FrameLimiter(0, 1, bytes_rate=100, bytes_burst=1000)
    assert limiter.rate == 0 and limiter.bytes_burst == 1000
    assert limiter.allow(600)
    assert not limiter.allow(600)  # 400 left
    assert limiter.last_refused == "bytes" and limiter.rejected == 1
    assert str(limiter.error()) == "too many bytes: at most 100 per second (burst 1000)"
    assert limiter.allow(300)
    frames = FrameLimiter(1, 1)
    assert frames.allow(10**9)  # no byte bucket: only the frame count matters
    assert not frames.allow(1)
    assert str(frames.error()).startswith("too many frames")
