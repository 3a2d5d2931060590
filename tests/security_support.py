"""Tokens, keys and a policy function for the security tests (tests/integration/test_security*,
test_token_lifecycle, test_revoke, test_grants, test_client_tokens, test_reconnect_window)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import support
from support import RunningHub

__all__ = [
    "API_KEY",
    "SECRET",
    "RsaKeys",
    "admin_api",
    "handshake_refusal",
    "jwt_auth",
    "public_rooms_only",
    "rsa_keys",
    "start_hub_at",
    "token",
]

#: Test-only credentials (never used outside the test suite).
SECRET = "test-secret-0123456789-abcdefghijklmnop"
API_KEY = "test-api-key-0123456789"


def jwt_auth(**extra: Any) -> dict[str, Any]:
    """An ``[auth]`` section with HS256 and one API key."""
    return {"mode": "jwt", "secret": SECRET, "api_keys": [API_KEY], **extra}


def token(
    sub: str = "alice",
    *,
    ttl: float = 300,
    key: Any = SECRET,
    alg: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed token; ``exp=<float>`` in ``claims`` gives a precise expiry (short-lived tests)."""
    body = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


@dataclass
class RsaKeys:
    """A generated RS256 key pair: ``private`` signs, ``pem_file`` is for ``public_key_file``."""

    private: Any
    pem_file: Path

    def token(self, sub: str = "alice", **claims: Any) -> str:
        return token(sub, key=self.private, alg="RS256", **claims)


def rsa_keys(directory: Path) -> RsaKeys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = directory / "rs256.pem"
    path.write_bytes(pem)
    return RsaKeys(private, path)


def admin_api(base_url: str) -> httpx.AsyncClient:
    """An HTTP client for ``/api`` with the test API key."""
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"})


async def start_hub_at(port: int, **overrides: Any) -> RunningHub:
    """``support.start_hub`` on a given port (a hub restarted where its clients reconnect).

    Reuses ``start_hub`` itself, so the server is configured exactly as everywhere else.
    """
    original = support.unused_port
    support.unused_port = lambda: port
    try:
        return await support.start_hub(**overrides)
    finally:
        support.unused_port = original


async def handshake_refusal(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Open a WebSocket that must be refused: (HTTP status, JSON body, headers)."""
    import orjson

    try:
        ws = await connect(url, open_timeout=5, **kwargs)
    except InvalidStatus as exc:
        response = exc.response
        body = orjson.loads(response.body) if response.body else {}
        return response.status_code, body, {k.lower(): v for k, v in response.headers.raw_items()}
    await ws.close()
    raise AssertionError(f"handshake to {url} was accepted")


def public_rooms_only(client: Any, action: str, room: str) -> bool:
    """A policy function: anyone may use ``public:*``; only ``boss`` may publish to ``news``."""
    if room.startswith("public:"):
        return True
    return room == "news" and (action != "publish" or client.client_id == "boss")
