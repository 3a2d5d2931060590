"""Cost of the security checks per frame and per handshake (in-process, no sockets).

    .venv/bin/python bench/security.py

Prints ns per call for the rate limiter and the room check (paid on every frame
when turned on) and µs per JWT verification (paid once per handshake), next to
a baseline of the node decoding one frame, measured in the same run.
"""

from __future__ import annotations

import time
import timeit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wirehub.auth import Authorizer
from wirehub.core.connection import Connection
from wirehub.core.protocol import decode
from wirehub.core.ratelimit import FrameLimiter

SECRET = "bench-secret-0123456789-abcdefghijklmnop"


class _Null:
    kind = "ws"

    async def send(self, frame: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...


def per_call(stmt: object, number: int) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number


def main() -> None:
    frame = '{"type":"publish","room":"chat:1","data":{"text":"hello"},"ref":"r1"}'
    base = per_call(lambda: decode(frame, max_size=65536), 200_000)
    limiter = FrameLimiter(1e12, 10**9, abuse_limit=100)
    rate = per_call(limiter.allow, 200_000)

    hs = Authorizer(mode="jwt", secret=SECRET)
    principal = hs.verify_jwt(
        jwt.encode({"sub": "a", "exp": int(time.time()) + 600, "rooms": ["chat:*"]}, SECRET)
    )
    conn = Connection.__new__(Connection)
    conn.id = "a"
    conn.meta = {"principal": principal}
    check = per_call(lambda: hs.authorize(conn, "publish", "chat:1"), 200_000)

    token = jwt.encode({"sub": "a", "exp": int(time.time()) + 600}, SECRET)
    hs_verify = per_call(lambda: hs.verify_jwt(token), 5_000)
    key = ec.generate_private_key(ec.SECP256R1())
    es = Authorizer(
        mode="jwt",
        algorithms=["ES256"],
        public_key=key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    es_token = jwt.encode({"sub": "a", "exp": int(time.time()) + 600}, key, algorithm="ES256")
    es_verify = per_call(lambda: es.verify_jwt(es_token), 1_000)

    print(f"decode one frame (baseline)     {base * 1e9:8.0f} ns")
    print(f"rate limiter allow()            {rate * 1e9:8.0f} ns  ({rate / base:.2f}x decode)")
    print(f"room grant check (publish)      {check * 1e9:8.0f} ns  ({check / base:.2f}x decode)")
    print(f"JWT verify HS256 (handshake)    {hs_verify * 1e6:8.1f} µs")
    print(f"JWT verify ES256 (handshake)    {es_verify * 1e6:8.1f} µs")


if __name__ == "__main__":
    main()
