"""``POST /api/auth/revoke``: by subject or token id, on one hub and across real nodes.

Revoked connections close with 4403 ``revoked``; a revoked token is refused at the
handshake and on refresh until it would have expired — in Redis mode on every
node, including one started after the revocation.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cluster_support import start_node, stop_node
from security_support import API_KEY, SECRET, admin_api, handshake_refusal, jwt_auth, token
from support import open_client


@pytest.fixture
async def secured(hub_server):
    return await hub_server(auth=jwt_auth())


async def test_revoke_by_sub_closes_its_connections_and_refuses_older_tokens(secured, ws_client):
    old = token("alice", rooms=["r"], iat=time.time() - 60)
    alice = await ws_client(f"{secured.ws}?token={old}")
    bob = await ws_client(f"{secured.ws}?token={token('bob', rooms=['r'])}")
    await bob.request("join", room="r")
    await alice.request("join", room="r")
    await bob.expect("presence", event="join", client_id="alice")

    async with admin_api(secured.http) as http:
        resp = await http.post("/api/auth/revoke", json={"sub": "alice"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "sub" and body["value"] == "alice" and body["closed"] == 1
    assert body["shared"] is None  # one node
    assert await alice.closed() == (4403, "revoked")
    await bob.expect("presence", event="leave", client_id="alice")
    assert (await bob.request("ping"))["type"] == "pong"  # others untouched

    # Tokens issued before the revocation are refused; a new one is fine.
    status, refused, _ = await handshake_refusal(f"{secured.ws}?token={old}")
    assert status == 401 and refused["detail"] == {
        "code": "unauthorized",
        "message": "subject revoked",
    }
    fresh = await ws_client(f"{secured.ws}?token={token('alice', iat=time.time())}")
    assert fresh.client_id == "alice"


async def test_revoke_by_jti_closes_that_token_and_refuses_it_on_handshake_and_refresh(
    secured, ws_client
):
    stolen = token("carol", jti="t-1", ttl=120)
    carol = await ws_client(f"{secured.ws}?token={stolen}")
    dave = await ws_client(f"{secured.ws}?token={token('dave', jti='t-2')}")

    async with admin_api(secured.http) as http:
        body = (await http.post("/api/auth/revoke", json={"jti": "t-1"})).json()
    assert body["kind"] == "jti" and body["closed"] == 1
    # Kept until the token's own exp (known from the live connection), no longer.
    assert body["until"] == pytest.approx(carol_exp(stolen), abs=1)
    assert await carol.closed() == (4403, "revoked")

    status, refused, _ = await handshake_refusal(f"{secured.ws}?token={stolen}")
    assert status == 401 and refused["detail"]["message"] == "token revoked"
    # The same subject with another token id connects; the revoked one cannot refresh in.
    again = await ws_client(f"{secured.ws}?token={token('carol', jti='t-3')}")
    reply = await again.request("refresh", token=stolen)
    assert reply["code"] == "unauthorized" and reply["message"] == "token revoked"
    assert (await dave.request("ping"))["type"] == "pong"
    # Even the HTTP API refuses a revoked admin token.
    admin = token("root", admin=True, jti="t-admin")
    async with admin_api(secured.http) as http:
        await http.post("/api/auth/revoke", json={"jti": "t-admin"})
    async with httpx.AsyncClient(base_url=secured.http) as http:
        denied = await http.get("/api/rooms", headers={"Authorization": f"Bearer {admin}"})
    assert denied.status_code == 401 and denied.json()["detail"]["message"] == "token revoked"


def carol_exp(raw: str) -> float:
    import jwt

    return float(jwt.decode(raw, SECRET, algorithms=["HS256"])["exp"])


async def test_revoke_is_admin_only_validated_and_in_openapi(secured):
    async with httpx.AsyncClient(base_url=secured.http) as http:
        assert (await http.post("/api/auth/revoke", json={"sub": "x"})).status_code == 401
        user = {"Authorization": f"Bearer {token('alice')}"}
        forbidden = await http.post("/api/auth/revoke", json={"sub": "x"}, headers=user)
        assert forbidden.status_code == 403
        key = {"Authorization": f"Bearer {API_KEY}"}
        for bad in ({}, {"sub": "a", "jti": "b"}, {"sub": "bad id!"}):
            resp = await http.post("/api/auth/revoke", json=bad, headers=key)
            assert resp.status_code == 422, bad
        schema = (await http.get("/openapi.json")).json()
    op = schema["paths"]["/api/auth/revoke"]["post"]
    assert op["security"] == [{"bearer": []}] and op["tags"] == ["auth"]


# -- across nodes ------------------------------------------------------------------------------


def auth_env() -> dict[str, str]:
    return {
        "WIREHUB_AUTH__MODE": "jwt",
        "WIREHUB_AUTH__SECRET": SECRET,
        "WIREHUB_AUTH__API_KEYS": json.dumps([API_KEY]),
    }


@pytest.mark.slow
async def test_revocations_reach_every_node_and_a_node_started_later(redis_url):
    a, b = start_nodes_with_auth(redis_url)
    started: list = [a, b]
    clients = []
    try:
        old_alice = token("alice", iat=time.time() - 60)
        erin_token = token("erin", jti="leak-1", ttl=120)
        alice = await open_client(f"{b.ws}?token={old_alice}")
        erin = await open_client(f"{b.ws}?token={erin_token}")
        frank = await open_client(f"{b.ws}?token={token('frank')}")
        clients += [alice, erin, frank]

        # Revoked through node A: the connections on node B close.
        async with admin_api(a.http) as http:
            by_sub = (await http.post("/api/auth/revoke", json={"sub": "alice"})).json()
            by_jti = (
                await http.post(
                    "/api/auth/revoke", json={"jti": "leak-1", "until": time.time() + 120}
                )
            ).json()
        assert by_sub["shared"] is True and by_jti["shared"] is True
        assert by_sub["closed"] == 0  # nobody of alice's on node A itself
        assert await alice.closed() == (4403, "revoked")
        assert await erin.closed() == (4403, "revoked")
        assert (await frank.request("ping"))["type"] == "pong"

        # Node B refuses them at the handshake (it learned from the notice).
        for raw, message in ((old_alice, "subject revoked"), (erin_token, "token revoked")):
            status, body, _ = await handshake_refusal(f"{b.ws}?token={raw}")
            assert status == 401 and body["detail"]["message"] == message

        # A node that starts now loads them from Redis.
        c = start_node(redis_url, "revoke", **auth_env())
        started.append(c)
        for raw, message in ((old_alice, "subject revoked"), (erin_token, "token revoked")):
            status, body, _ = await handshake_refusal(f"{c.ws}?token={raw}")
            assert status == 401 and body["detail"]["message"] == message
        ok = await open_client(f"{c.ws}?token={token('erin', jti='new-1')}")
        clients.append(ok)
        assert ok.client_id == "erin"
    finally:
        for client in clients:
            await client.close()
        for node in started:
            stop_node(node)


def start_nodes_with_auth(redis_url: str, count: int = 2) -> list:
    """``count`` nodes with JWT auth, started in parallel (each takes a second to import)."""
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start_node, redis_url, "revoke", **auth_env()) for _ in range(count)]
    nodes, errors = [], []
    for future in futures:
        try:
            nodes.append(future.result())
        except Exception as exc:
            errors.append(exc)
    if errors:
        for node in nodes:
            stop_node(node)
        raise errors[0]
    return nodes
