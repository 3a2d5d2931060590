"""The ``[auth]`` section: tokens, room grants, API keys, origins and CORS (docs/security.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from wirehub.settings.sections import _Section

__all__ = ["AuthSettings"]


class AuthSettings(_Section):
    """``[auth]``: who may connect, what they may do, and where browsers may come from.

    ``secret`` and ``api_keys`` are read from the environment only
    (``WIREHUB_AUTH__SECRET``, ``WIREHUB_AUTH__API_KEYS='["k1","k2"]'``) and are
    :class:`SecretStr`: shown as ``**********`` wherever settings are printed.
    """

    #: ``none``: anyone may connect as any client id (demo, loopback); ``jwt``: a
    #: signed token is required at the WebSocket handshake and its ``sub`` is the client id.
    mode: Literal["none", "jwt"] = "none"
    #: Shared secret of the HS256/HS384/HS512 algorithms.
    secret: SecretStr | None = None
    #: Accepted JWT algorithms (never ``none``).
    algorithms: list[str] = Field(["HS256"], min_length=1)
    #: PEM public key for RS*/ES*/PS*/EdDSA tokens.
    public_key_file: str | None = None
    #: A JWKS document (``{"keys": [...]}``) for RS*/ES* tokens; the token's ``kid`` picks the key.
    jwks_file: str | None = None
    #: When set, tokens must carry this ``aud`` / ``iss``.
    audience: str | None = None
    issuer: str | None = None
    #: Seconds of clock skew tolerated on ``exp`` / ``nbf``.
    leeway: float = Field(0.0, ge=0)
    #: Tokens without ``exp`` are refused.
    require_exp: bool = True
    #: Seconds before a live connection's token expires that it gets ``token.expiring``.
    expiry_warning: float = Field(30.0, ge=0)
    #: Seconds after ``exp`` before an unrefreshed connection is closed (4401).
    expiry_grace: float = Field(1.0, ge=0)
    #: Seconds a revocation is kept when the token's own ``exp`` is not known
    #: (every revocation by ``sub``; a ``jti`` revoked without ``exp``).
    revoke_ttl: float = Field(24 * 3600.0, gt=0)
    #: Revocations kept in memory (the closest to expiry go first when full).
    max_revocations: int = Field(100_000, ge=1)
    #: Room patterns every authenticated client may join, publish to and read (fnmatch).
    default_rooms: list[str] = []
    #: Patterns added to every token's grant claims, by claim name (``rooms``, ``join``,
    #: ``publish``, ``history``, ``direct``, ``jobs``, ``upload``): e.g. ``{direct = ["*"]}``.
    default_grants: dict[str, list[str]] = {}
    #: Keys for the HTTP API (``Authorization: Bearer <key>``) and for trusted
    #: back-end WebSocket clients; each key acts as an admin.
    api_keys: list[SecretStr] = []
    #: ``"module:function"`` called as ``function(client, action, room) -> bool``; it
    #: replaces the token grants (``action`` is join, publish, history or presence).
    policy: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    #: Browser origins allowed to open a WebSocket (``Origin`` header); empty: any.
    #: ``"*"`` allows any; entries are fnmatch patterns like ``"https://*.example.com"``.
    allowed_origins: list[str] = []
    #: CORS for the HTTP API: origins allowed to call it from a browser (empty: no CORS headers).
    cors_origins: list[str] = []
    cors_allow_credentials: bool = False

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        algs = [a.upper() for a in self.algorithms]
        if "NONE" in algs:
            raise ValueError("algorithms: 'none' is never accepted")
        claims = ("rooms", "join", "publish", "history", "direct", "jobs", "upload")
        unknown = sorted(set(self.default_grants) - set(claims))
        if unknown:
            expected = ", ".join(claims)
            raise ValueError(f"default_grants: unknown claim {unknown[0]!r} (expected {expected})")
        if self.mode == "jwt":
            hmac = [a for a in algs if a.startswith("HS")]
            keyed = [a for a in algs if not a.startswith("HS")]
            if hmac and self.secret is None:
                raise ValueError(
                    f"mode = 'jwt' with {', '.join(hmac)} needs a secret "
                    "(set WIREHUB_AUTH__SECRET in the environment)"
                )
            if keyed and not (self.public_key_file or self.jwks_file):
                raise ValueError(
                    f"mode = 'jwt' with {', '.join(keyed)} needs public_key_file or jwks_file"
                )
            if self.secret is not None and len(self.secret.get_secret_value()) < 32:
                raise ValueError("secret: use at least 32 characters")
        return self

    @property
    def api_protected(self) -> bool:
        """The HTTP API needs a key or an admin token (auth on, or keys configured)."""
        return self.mode != "none" or bool(self.api_keys)
