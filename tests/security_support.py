"""Tokens, keys and a policy function for the security tests (tests/integration/test_security*)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

__all__ = [
    "API_KEY",
    "SECRET",
    "handshake_refusal",
    "jwt_auth",
    "public_rooms_only",
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
    body = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


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
