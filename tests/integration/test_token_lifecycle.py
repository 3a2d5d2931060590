"""Tokens on live connections: token.expiring, close 4401 at exp, refresh, grants replaced.

Real hub, real sockets, real tokens (HS256 and RS256), real clocks with 1-3 s expiries.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from security_support import API_KEY, jwt_auth, rsa_keys, token
from support import FACTOR, TIMEOUT

WARNING = 0.6
GRACE = 0.3
#: Scheduling slack allowed on top of an expected time (a loaded 2-core machine).
SLACK = 1.0 * FACTOR


def lifecycle_auth(**extra):
    return jwt_auth(expiry_warning=WARNING, expiry_grace=GRACE, **extra)


@pytest.fixture
async def secured(hub_server):
    return await hub_server(auth=lifecycle_auth())


async def test_expiring_is_announced_then_the_connection_closes_4401_at_exp(secured, ws_client):
    exp = time.time() + 1.5
    alice = await ws_client(f"{secured.ws}?token={token('alice', exp=exp, rooms=['a'])}")
    await alice.request("join", room="a")

    warned = await alice.expect("token.expiring", timeout=3)
    now = time.time()
    assert warned["exp"] == pytest.approx(exp)
    assert exp - WARNING - 0.05 <= now <= exp - WARNING + SLACK
    assert 0 < warned["in"] <= WARNING + 0.05

    code, reason = await alice.closed(timeout=3)
    closed_at = time.time()
    assert (code, reason) == (4401, "token expired")
    assert exp + GRACE - 0.05 <= closed_at <= exp + GRACE + SLACK
    assert "alice" not in secured.hub.node.clients
    assert secured.hub.tokens.sessions.expired == 1
    assert len(secured.hub.tokens.sessions) == 0  # timer and index entries gone


async def test_refresh_moves_the_expiry_rs256(hub_server, ws_client, tmp_path):
    keys = rsa_keys(tmp_path)
    running = await hub_server(
        auth=lifecycle_auth(algorithms=["RS256"], public_key_file=str(keys.pem_file))
    )
    first_exp = time.time() + 1.2
    alice = await ws_client(f"{running.ws}?token={keys.token('alice', exp=first_exp)}")
    await alice.expect("token.expiring", timeout=3, exp=pytest.approx(first_exp))

    second_exp = time.time() + 2.0
    reply = await alice.request("refresh", token=keys.token("alice", exp=second_exp))
    assert reply["type"] == "refreshed" and reply["exp"] == pytest.approx(second_exp)

    # Past the first token's exp + grace the connection is still alive...
    await asyncio.sleep(max(0.0, first_exp + GRACE + 0.2 - time.time()))
    assert (await alice.request("ping"))["type"] == "pong"
    # ...until the new one runs out, announced first.
    await alice.expect("token.expiring", timeout=3, exp=pytest.approx(second_exp))
    code, _ = await alice.closed(timeout=3)
    assert code == 4401
    assert time.time() >= second_exp + GRACE - 0.05
    assert running.hub.tokens.sessions.refreshed == 1


async def test_a_refresh_replaces_the_grants_and_leaves_rooms_no_longer_granted(secured, ws_client):
    alice = await ws_client(f"{secured.ws}?token={token('alice', rooms=['a', 'b'])}")
    watcher = await ws_client(f"{secured.ws}?client_id=watcher", additional_headers=_key())
    for room in ("a", "b"):
        await watcher.request("join", room=room)
        await alice.request("join", room=room)
        await watcher.expect("presence", room=room, event="join", client_id="alice")

    reply = await alice.request("refresh", token=token("alice", rooms=["a"]))
    assert reply["type"] == "refreshed"
    # The room is left before the reply, with the reason.
    assert alice.buffer == [{"type": "left", "room": "b", "reason": "revoked"}]
    alice.buffer.clear()
    await watcher.expect("presence", room="b", event="leave", client_id="alice")

    # Nothing of room b reaches alice any more; room a goes on.
    await watcher.request("publish", room="b", data="secret")
    refused = await alice.request("join", room="b")
    assert refused["code"] == "forbidden" and refused["message"] == "not allowed to join room 'b'"
    ack = await watcher.request("publish", room="a", data="still here")
    got = await alice.expect("message", room="a")
    assert got["data"] == "still here" and got["offset"] == ack["offset"]
    assert secured.hub.node.clients["alice"].rooms == {"a"}


REFUSED_REFRESHES = [
    (lambda: token("mallory"), "the new token's 'sub' is not this connection's client id"),
    (
        lambda: token("alice", key="another-secret-of-at-least-32-chars!!"),
        "invalid token: Signature verification failed",
    ),
    (lambda: token("alice", ttl=-30), "token expired"),
    (lambda: "not.a.jwt", "invalid token"),
]


async def test_an_invalid_or_foreign_refresh_is_refused_and_changes_nothing(secured, ws_client):
    exp = time.time() + 1.5
    alice = await ws_client(f"{secured.ws}?token={token('alice', exp=exp, rooms=['a'])}")
    await alice.request("join", room="a")

    for make, message in REFUSED_REFRESHES:
        refused = await alice.request("refresh", token=make())
        assert refused["type"] == "error" and refused["code"] == "unauthorized"
        assert refused["message"].startswith(message)
    # Same grants, same rooms, same expiry: warned and closed on the first token's schedule.
    conn = secured.hub.node.clients["alice"]
    assert conn.rooms == {"a"}
    assert conn.meta["principal"].token.exp == pytest.approx(exp)
    assert (await alice.request("join", room="other"))["code"] == "forbidden"
    await alice.expect("token.expiring", timeout=3, exp=pytest.approx(exp))
    code, _ = await alice.closed(timeout=3)
    assert code == 4401
    assert secured.hub.tokens.refresh_refused == len(REFUSED_REFRESHES)


async def test_refresh_needs_a_token_field_and_a_token_connection(secured, ws_client):
    alice = await ws_client(f"{secured.ws}?token={token('alice')}")
    missing = await alice.request("refresh")
    assert missing["code"] == "bad_request"
    assert missing["message"] == "missing field 'token' (a non-empty string)"
    backend = await ws_client(f"{secured.ws}?client_id=backend", additional_headers=_key())
    keyed = await backend.request("refresh", token=token("backend"))
    assert keyed["code"] == "bad_request"
    assert keyed["message"] == "this connection has no token to refresh (API key or auth off)"


async def test_without_require_exp_a_token_without_exp_lives_without_timers(hub_server, ws_client):
    import jwt

    from security_support import SECRET

    running = await hub_server(auth=lifecycle_auth(require_exp=False))
    forever = jwt.encode({"sub": "forever"}, SECRET, algorithm="HS256")
    client = await ws_client(f"{running.ws}?token={forever}")
    assert client.client_id == "forever"
    assert running.hub.tokens.sessions.by_sub == {"forever": {running.hub.node.clients["forever"]}}
    await client.no_frame(WARNING + GRACE)


async def test_require_exp_is_on_by_default_in_jwt_mode(hub_server):
    from security_support import handshake_refusal

    running = await hub_server(auth=jwt_auth())
    assert running.hub.settings.auth.require_exp is True
    import jwt

    from security_support import SECRET

    status, body, _ = await handshake_refusal(
        f"{running.ws}?token={jwt.encode({'sub': 'x'}, SECRET, algorithm='HS256')}"
    )
    assert status == 401 and 'missing the "exp" claim' in body["detail"]["message"]


async def test_timers_are_one_handle_per_connection(secured, ws_client):
    """Each connection has exactly one live timer (no periodic scan); none once it left."""
    clients = [await ws_client(f"{secured.ws}?token={token(f'u{i}', ttl=60)}") for i in range(20)]
    sessions = secured.hub.tokens.sessions
    tracked = list(sessions._tracked.values())
    assert len(tracked) == 20
    assert len({id(t.handle) for t in tracked}) == 20
    assert all(t.handle is not None and not t.handle.cancelled() for t in tracked)
    for client in clients:
        await client.close()
    deadline = time.monotonic() + TIMEOUT
    while len(sessions) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert len(sessions) == 0 and sessions.by_sub == {}
    assert all(t.handle.cancelled() for t in tracked)


def _key() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


async def test_a_token_shorter_than_the_warning_is_warned_halfway_not_at_once(
    hub_server, ws_client
):
    # expiry_warning 30 s, a 2 s token: warned after ~1 s (half its life), so a client
    # that refreshes with equally short tokens is not asked again and again at once.
    running = await hub_server(auth=jwt_auth(expiry_warning=30, expiry_grace=GRACE))
    exp = time.time() + 2.0
    alice = await ws_client(f"{running.ws}?token={token('alice', exp=exp)}")
    await alice.no_frame(0.7)
    warned = await alice.expect("token.expiring", timeout=3, exp=pytest.approx(exp))
    assert 0 < warned["in"] <= 1.1  # ~1 s lead: half of what was left, not 30 s
