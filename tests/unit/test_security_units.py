"""Sans-I/O security parts: token bucket, per-client limits, address admission, grants."""

from __future__ import annotations

import pytest

from wirehub.auth import Principal
from wirehub.core.admission import PeerAdmission
from wirehub.core.ratelimit import KeyedLimiter, TokenBucket
from wirehub.errors import Forbidden, LimitExceeded


def test_token_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True  # one token after 0.1 s
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_keyed_limiter_is_per_key_and_stays_bounded():
    limiter = KeyedLimiter(per_minute=2, max_keys=4)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b") is True
    for i in range(20):
        limiter.allow(f"k{i}")
    assert len(limiter) <= 4


def test_peer_admission_by_network_and_count():
    admission = PeerAdmission(["10.0.0.0/8", "::1"], max_per_address=1)
    with pytest.raises(Forbidden, match=r"address 192\.168\.1\.5 is not in the allowed networks"):
        admission.admit("192.168.1.5")
    admission.admit("10.1.2.3")
    with pytest.raises(LimitExceeded, match="already has 1 connections"):
        admission.admit("10.1.2.3")
    admission.release("10.1.2.3")
    admission.admit("10.1.2.3")
    admission.admit("::ffff:10.9.9.9")  # IPv4-mapped IPv6 matches the IPv4 network
    admission.admit("::1")
    assert not PeerAdmission(["10.0.0.0/8"]).allowed("not-an-ip")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        PeerAdmission(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("action", "room", "allowed"),
    [
        ("join", "chat:1", True),
        ("publish", "chat:1", True),
        ("history", "chat:1", True),
        ("presence", "news", True),  # presence uses the join grants
        ("publish", "news", False),
        ("join", "other", False),
        ("join", "$hub.clients", False),  # "*" never matches a system room
        ("join", "$jobs", True),
        ("join", "$job:1", False),
    ],
)
def test_grants(action, room, allowed):
    principal = Principal(
        "alice",
        via="jwt",
        grants={
            "join": ("chat:*", "news", "*x*", "$jobs"),
            "publish": ("chat:*",),
            "history": ("chat:*",),
        },
    )
    assert principal.allows(action, room) is allowed
    assert Principal("root", admin=True).allows(action, room) is True
