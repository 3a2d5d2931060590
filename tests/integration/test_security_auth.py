"""Authentication and room grants, tried as an attacker would: real hub, real sockets."""

from __future__ import annotations

import json
import logging
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from security_support import API_KEY, SECRET, handshake_refusal, jwt_auth, token
from support import open_client


@pytest.fixture
async def secured(hub_server):
    return await hub_server(auth=jwt_auth())


# -- the handshake ---------------------------------------------------------------


# Queries are built when the test runs, not when it is collected: a token made at
# collection could expire before a slow suite reaches the test.
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (lambda: "", "a token is required"),
        (lambda: "?token=not.a.jwt", "invalid token"),
        (
            lambda: "?token=" + token(key="another-secret-of-at-least-32-chars!!"),
            "invalid token: Signature verification failed",
        ),
        (lambda: "?token=" + token(ttl=-60), "token expired"),
        (
            lambda: (
                "?token="
                + jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
            ),
            "token algorithm 'none' is not accepted",
        ),
        (
            lambda: "?token=" + jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
            'invalid token: Token is missing the "exp" claim',
        ),
        (lambda: "?token=" + token(sub="bad id!"), "token 'sub' is not a valid client id"),
        (lambda: "?token=wrong-api-key", "invalid token"),
    ],
    ids=[
        "missing",
        "garbage",
        "bad-signature",
        "expired",
        "alg-none",
        "no-exp",
        "bad-sub",
        "wrong-key",
    ],
)
async def test_bad_credentials_are_refused_at_the_handshake_with_401(secured, query, message):
    status, body, headers = await handshake_refusal(secured.ws + query())
    assert status == 401
    assert body["detail"]["code"] == "unauthorized"
    assert body["detail"]["message"].startswith(message)
    assert headers["www-authenticate"].startswith("Bearer")
    assert secured.hub.node.clients == {}  # nobody got in, not even for a moment


async def test_token_in_header_or_query_makes_sub_the_client_id(secured, ws_client):
    by_query = await ws_client(f"{secured.ws}?token={token('alice')}")
    assert by_query.client_id == "alice"
    by_header = await ws_client(
        secured.ws, additional_headers={"Authorization": f"Bearer {token('bob')}"}
    )
    assert by_header.client_id == "bob"
    same = await ws_client(f"{secured.ws}?client_id=carol&token={token('carol')}")
    assert same.client_id == "carol"


async def test_nobody_can_claim_another_client_id(secured, ws_client):
    victim = await ws_client(f"{secured.ws}?token={token('alice')}")
    status, body, _ = await handshake_refusal(
        f"{secured.ws}?client_id=alice&token={token('mallory')}"
    )
    assert status == 403
    assert body["detail"] == {
        "code": "forbidden",
        "message": "client_id does not match the token's subject",
    }
    # alice was not replaced (4409) by the attempt
    assert (await victim.request("ping"))["type"] == "pong"


async def test_an_api_key_lets_a_backend_connect_as_admin(secured, ws_client):
    backend = await ws_client(
        f"{secured.ws}?client_id=backend", additional_headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert backend.client_id == "backend"
    assert (await backend.request("join", room="$hub.clients"))["type"] == "joined"


# -- grants ------------------------------------------------------------------------


async def test_rooms_outside_the_grant_are_forbidden_and_nothing_is_delivered(secured, ws_client):
    alice = await ws_client(f"{secured.ws}?token={token('alice', rooms=['chat:*'])}")
    admin = await ws_client(f"{secured.ws}?token={token('root', admin=True)}")
    await admin.request("join", room="secret")
    await admin.request("join", room="chat:1")

    refused = await alice.request("join", room="secret")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert refused["message"] == "not allowed to join room 'secret'"
    assert refused["room"] == "secret"
    refused = await alice.request("publish", room="secret", data="leak")
    assert refused["code"] == "forbidden"
    refused = await alice.request("presence", room="secret")
    assert refused["code"] == "forbidden"
    await admin.no_frame()  # no presence event, no message reached the room

    assert (await alice.request("join", room="chat:1"))["type"] == "joined"
    await admin.expect("presence", room="chat:1", event="join", client_id="alice")
    ack = await alice.request("publish", room="chat:1", data="hi")
    await admin.expect("message", room="chat:1", offset=ack["offset"], data="hi")


async def test_separate_join_publish_history_grants(secured, ws_client):
    writer = await ws_client(f"{secured.ws}?token={token('writer', rooms=['feed'])}")
    await writer.request("join", room="feed")
    await writer.request("publish", room="feed", data=1)
    reader = await ws_client(f"{secured.ws}?token={token('reader', join=['feed'])}")

    refused = await reader.request("join", room="feed", since=0)
    assert (
        refused["code"] == "forbidden"
        and refused["message"] == "not allowed to history room 'feed'"
    )
    assert (await reader.request("join", room="feed"))["type"] == "joined"
    refused = await reader.request("publish", room="feed", data="x")
    assert (
        refused["code"] == "forbidden"
        and refused["message"] == "not allowed to publish room 'feed'"
    )
    await writer.expect("presence", event="join", client_id="reader")
    await writer.no_frame()

    historian = await ws_client(
        f"{secured.ws}?token={token('historian', join=['feed'], history=['feed'])}"
    )
    joined = await historian.request("join", room="feed", since=0)
    assert joined["type"] == "joined" and joined["recovered"] is True
    assert (await historian.expect("message"))["data"] == 1


async def test_system_rooms_need_an_admin_or_an_explicit_system_grant(secured, ws_client):
    everything = await ws_client(f"{secured.ws}?token={token('greedy', rooms=['*'])}")
    for room in ("$hub.clients", "$services", "$jobs", "$bridges", "$service:db"):
        refused = await everything.request("join", room=room)
        assert refused["code"] == "forbidden", room  # "*" never covers system rooms
    assert (await everything.request("join", room="anything"))["type"] == "joined"

    watcher = await ws_client(f"{secured.ws}?token={token('watcher', join=['$jobs'])}")
    assert (await watcher.request("join", room="$jobs"))["type"] == "joined"
    admin = await ws_client(f"{secured.ws}?token={token('root', admin=True)}")
    assert (await admin.request("join", room="$hub.clients"))["type"] == "joined"
    # even an admin cannot publish into a system room over the WebSocket
    refused = await admin.request("publish", room="$hub.clients", data="x")
    assert refused["code"] == "forbidden"


async def test_default_rooms_apply_to_every_token(hub_server, ws_client):
    running = await hub_server(auth=jwt_auth(default_rooms=["lobby"]))
    plain = await ws_client(f"{running.ws}?token={token('plain')}")
    assert (await plain.request("join", room="lobby"))["type"] == "joined"
    assert (await plain.request("join", room="other"))["code"] == "forbidden"


async def test_a_policy_function_replaces_the_grants(hub_server, ws_client):
    running = await hub_server(auth={"policy": "security_support:public_rooms_only"})
    boss = await ws_client(running.ws, "boss")
    guest = await ws_client(running.ws, "guest")
    assert (await guest.request("join", room="public:hall"))["type"] == "joined"
    assert (await guest.request("join", room="private"))["code"] == "forbidden"
    await boss.request("join", room="news")
    await guest.request("join", room="news")
    await boss.expect("presence", event="join", client_id="guest")
    assert (await guest.request("publish", room="news", data="fake"))["code"] == "forbidden"
    await boss.no_frame()
    assert (await boss.request("publish", room="news", data="real"))["type"] == "ack"
    assert (await guest.wait_for("message"))["data"] == "real"


async def test_es256_tokens_checked_with_a_jwks_file_and_a_public_key(
    hub_server, ws_client, tmp_path
):
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}))
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(pem)

    for auth in ({"jwks_file": str(jwks)}, {"public_key_file": str(pem_file)}):
        running = await hub_server(auth={"mode": "jwt", "algorithms": ["ES256"], **auth})
        good = token("dev", key=private, alg="ES256", headers={"kid": "k1"}, rooms=["x"])
        client = await ws_client(f"{running.ws}?token={good}")
        assert client.client_id == "dev"
        # an HS256 token signed with the public key (algorithm confusion) is refused
        forged = jwt.encode(
            {"sub": "dev", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256"
        )
        status, body, _ = await handshake_refusal(f"{running.ws}?token={forged}")
        assert status == 401 and "algorithm 'HS256' is not accepted" in body["detail"]["message"]


# -- origins ---------------------------------------------------------------------------


async def test_websocket_origins_are_checked(hub_server, ws_client):
    running = await hub_server(
        auth={"allowed_origins": ["https://app.example.com", "https://*.example.org"]}
    )
    status, body, _ = await handshake_refusal(running.ws, origin="https://evil.example.net")
    assert status == 403
    assert body["detail"]["message"] == "origin 'https://evil.example.net' is not allowed"
    await ws_client(running.ws, "a", origin="https://app.example.com")
    await ws_client(running.ws, "b", origin="https://eu.example.org")
    await ws_client(running.ws, "c")  # no Origin: not a browser


# -- HTTP API --------------------------------------------------------------------------


async def test_http_api_needs_a_key_or_admin_token_and_health_stays_open(secured):
    async with httpx.AsyncClient(base_url=secured.http) as http:
        for path in ("/api/rooms", "/api/clients", "/api/jobs", "/api/services", "/api/bridges"):
            missing = await http.get(path)
            assert missing.status_code == 401, path
            assert missing.json()["detail"]["code"] == "unauthorized"
            assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = await http.get("/api/rooms", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["detail"]["code"] == "unauthorized"
        user = await http.get(
            "/api/rooms", headers={"Authorization": f"Bearer {token('alice', rooms=['*'])}"}
        )
        assert user.status_code == 403
        assert user.json() == {
            "detail": {"code": "forbidden", "message": "this token has no admin grant"}
        }
        expired = await http.get(
            "/api/rooms", headers={"Authorization": f"Bearer {token('root', ttl=-5, admin=True)}"}
        )
        assert expired.status_code == 401 and expired.json()["detail"]["message"] == "token expired"
        post = await http.post("/api/rooms/x/publish", json={"data": 1})
        assert post.status_code == 401

        assert (
            await http.get("/api/rooms", headers={"Authorization": f"Bearer {API_KEY}"})
        ).status_code == 200
        admin = {"Authorization": f"Bearer {token('root', admin=True)}"}
        assert (
            await http.post("/api/rooms/x/publish", json={"data": 1}, headers=admin)
        ).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(open_path)).status_code == 200, open_path


async def test_openapi_declares_the_bearer_scheme_on_every_api_route(secured):
    async with httpx.AsyncClient(base_url=secured.http) as http:
        schema = (await http.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "API key or JWT",
        "description": "An API key from `[auth] api_keys`, or a JWT with `admin: true`.",
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if path.startswith("/api"):
                assert op.get("security") == [{"bearer": []}], (method, path)
            else:
                assert "security" not in op, (method, path)


async def test_cors_preflight_for_the_http_api(hub_server):
    running = await hub_server(auth={"cors_origins": ["https://app.example.com"]})
    async with httpx.AsyncClient(base_url=running.http) as http:
        allowed = await http.options(
            "/api/rooms",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await http.get("/api/rooms", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_api_keys_alone_protect_the_api_without_websocket_auth(hub_server, ws_client):
    running = await hub_server(auth={"api_keys": [API_KEY]})
    await ws_client(running.ws, "anyone")  # auth = "none": WebSocket open
    async with httpx.AsyncClient(base_url=running.http) as http:
        assert (await http.get("/api/rooms")).status_code == 401
        assert (
            await http.get("/api/rooms", headers={"Authorization": f"Bearer {API_KEY}"})
        ).status_code == 200


# -- secrets ---------------------------------------------------------------------------------


async def test_secrets_are_never_logged_or_shown(hub_server, caplog, monkeypatch, tmp_path):
    from wirehub.errors import ConfigError
    from wirehub.settings import load_settings

    caplog.set_level(logging.DEBUG)
    running = await hub_server(auth=jwt_auth())
    await handshake_refusal(f"{running.ws}?token={token(key='x' * 40)}")
    async with httpx.AsyncClient(base_url=running.http) as http:
        await http.get("/api/rooms", headers={"Authorization": "Bearer guess"})
    shown = [
        repr(running.hub.settings),
        running.hub.settings.model_dump_json(),
        repr(running.hub.auth),
        caplog.text,
    ]
    for text in shown:
        assert SECRET not in text and API_KEY not in text
    assert "**********" in shown[0] and "**********" in shown[1]

    # the secret only comes from the environment, never from a config file
    config = tmp_path / "hub.toml"
    config.write_text(f'[auth]\nmode = "jwt"\nsecret = "{SECRET}"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    assert "set WIREHUB_AUTH__SECRET in the environment" in str(exc.value) and SECRET not in str(
        exc.value
    )
    config.write_text('[auth]\nmode = "jwt"\n')
    monkeypatch.setenv("WIREHUB_AUTH__SECRET", SECRET)
    assert load_settings(config).auth.secret.get_secret_value() == SECRET
    monkeypatch.setenv("WIREHUB_AUTH__SECRET", "too-short")
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    assert "at least 32 characters" in str(exc.value) and "too-short" not in str(exc.value)


async def test_open_client_helper_still_works_without_auth(hub):
    client = await open_client(hub.ws, "plain")
    assert client.client_id == "plain"
    await client.close()
