"""Who a peer is and what it may do: JWT verification, API keys, grants.

No web imports: the WebSocket handshake and the HTTP API (``wirehub.web``) call
:meth:`Authorizer.authenticate` with the bearer credential they found, and the
node calls :meth:`Authorizer.authorize` (installed as ``node.authorize`` and in
the node's guards) before every action. Refusals raise :class:`Unauthorized`
(no, bad, expired or revoked credentials, HTTP 401) or :class:`Forbidden`
(``forbidden``, naming the action and its target).

Grants, from the token's claims (patterns are :mod:`fnmatch` patterns)::

    {"sub": "alice", "exp": ..., "jti": "t-81f3",
     "rooms": ["chat:*", "sensors"],           # join, publish and history
     "join": ["news"], "publish": ["chat:alice"], "history": ["chat:*"],
     "direct": ["support:*", "bob"],           # client ids it may message
     "jobs": ["thumbnail", "report.*"],        # job names it may submit
     "upload": ["thumbnail", ""],              # jobs an upload may feed ("": no job)
     "admin": false}

``presence`` uses the ``join`` grants. System rooms (``$...``: services, jobs,
bridges, stats) match only patterns that themselves start with ``$`` (so
``"*"`` never opens them), or an admin; the submitter of a job may always read
its events (``$job:<id>``) and cancel it (checked by ``wirehub.auth_session``).
``admin: true`` and API keys allow everything, including the HTTP API. A
``policy = "module:function"`` replaces the grants:
``function(principal, action, target) -> bool``.
"""

from __future__ import annotations

import fnmatch
import hmac
import importlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jwt

from wirehub.core.protocol import CLIENT_ID_RE
from wirehub.core.tokens import Revocations, TokenInfo
from wirehub.errors import ConfigError, Forbidden, Unauthorized

if TYPE_CHECKING:
    from wirehub.core.connection import Connection

__all__ = ["ACTIONS", "CLAIMS", "Authorizer", "Principal", "load_policy"]

logger = logging.getLogger("wirehub.auth")

#: What the node asks about, and the target of each: a room (``join``,
#: ``publish``, ``history``, ``presence`` — checked against the join grants), a
#: client id (``direct``), a job name (``job.submit``), the job an upload feeds
#: (``upload``, ``""`` for none), a job id (``job.events``, ``job.cancel``: the
#: submitter or an admin, unless a policy says otherwise).
ACTIONS = (
    "join",
    "publish",
    "history",
    "presence",
    "direct",
    "job.submit",
    "upload",
    "job.events",
    "job.cancel",
)
#: Grant claims and the action each one grants (``rooms`` grants the three room actions).
CLAIMS = {
    "join": "join",
    "publish": "publish",
    "history": "history",
    "direct": "direct",
    "jobs": "job.submit",
    "upload": "upload",
}
#: How a refusal names its action and target: ``not allowed to <text>``.
_REFUSALS = {
    "direct": "send a direct message to client '{}'",
    "job.submit": "submit job '{}'",
    "upload": "upload for job '{}'",
    "job.events": "read the events of job '{}'",
    "job.cancel": "cancel job '{}'",
}

Policy = Callable[["Principal", str, str], bool]


@dataclass(frozen=True)
class Principal:
    """An authenticated peer: its client id, how it proved it, and its grants."""

    client_id: str | None
    #: ``jwt``, ``api_key`` or ``anonymous`` (auth = "none").
    via: str = "anonymous"
    admin: bool = False
    grants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)
    #: The token's sub/jti/exp/iat, for the live-connection lifecycle (JWT only).
    token: TokenInfo | None = None

    def __post_init__(self) -> None:
        # One compiled regex per action and room kind: a check is one match() call.
        compiled = {}
        for action, patterns in self.grants.items():
            system = [p for p in patterns if p.startswith("$")]
            compiled[action] = (_compile(patterns), _compile(system))
        object.__setattr__(self, "_compiled", compiled)

    def allows(self, action: str, target: str) -> bool:
        """Grant check alone (no policy function); ``target`` as in :data:`ACTIONS`."""
        if self.admin:
            return True
        pair = self._compiled.get("join" if action == "presence" else action)  # type: ignore[attr-defined]
        if pair is None:
            return False
        regex = pair[1] if target.startswith("$") else pair[0]
        return regex is not None and regex.match(target) is not None


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    patterns = list(patterns)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def load_policy(spec: str) -> Policy:
    """Import ``"module:function"``; ConfigError when it is not there."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"auth.policy: cannot import {spec!r}: {exc}") from None
    if not callable(target):
        raise ConfigError(f"auth.policy: {spec!r} is not callable")
    return cast("Policy", target)


def _patterns(value: Any, claim: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise Unauthorized(f"claim '{claim}' must be a list of patterns")
    return tuple(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Authorizer:
    """Verifies credentials and answers "may this peer do that in this room?".

    Built from ``[auth]`` by :meth:`from_settings`; with ``mode = "none"`` and no
    policy, :attr:`enabled` is False and the hub installs no check at all.
    """

    def __init__(
        self,
        *,
        mode: str = "none",
        secret: str | None = None,
        algorithms: Iterable[str] = ("HS256",),
        public_key: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        require_exp: bool = True,
        default_rooms: Iterable[str] = (),
        default_grants: Mapping[str, Iterable[str]] | None = None,
        api_keys: Iterable[str] = (),
        policy: Policy | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.mode = mode
        self._secret = secret
        self.algorithms = [a for a in algorithms if a.lower() != "none"]
        self._public_key = public_key
        self._jwks: dict[str, jwt.PyJWK] = {}
        self._jwk_single: jwt.PyJWK | None = None
        if jwks is not None:
            keys = jwt.PyJWKSet.from_dict(dict(jwks)).keys
            self._jwks = {k.key_id: k for k in keys if k.key_id}
            self._jwk_single = keys[0] if len(keys) == 1 else None
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.require = ["sub", "exp"] if require_exp else ["sub"]
        self.default_rooms = tuple(default_rooms)
        self.default_grants = {k: tuple(v) for k, v in (default_grants or {}).items()}
        self._api_keys = [k.encode() for k in api_keys if k]
        self.policy = policy
        #: Revoked token ids and subjects: refused here, at the handshake and on refresh.
        self.revocations = revocations if revocations is not None else Revocations()
        self.refused = 0

    @classmethod
    def from_settings(cls, section: Any) -> Authorizer:
        """From an ``AuthSettings`` (duck-typed: this module does not import settings)."""
        public_key = jwks = None
        try:
            if section.public_key_file:
                public_key = Path(section.public_key_file).read_text()
            if section.jwks_file:
                jwks = json.loads(Path(section.jwks_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth: cannot read the key file: {exc}") from None
        try:
            return cls(
                mode=section.mode,
                secret=section.secret.get_secret_value() if section.secret else None,
                algorithms=section.algorithms,
                public_key=public_key,
                jwks=jwks,
                audience=section.audience,
                issuer=section.issuer,
                leeway=section.leeway,
                require_exp=section.require_exp,
                default_rooms=section.default_rooms,
                default_grants=section.default_grants,
                api_keys=[k.get_secret_value() for k in section.api_keys],
                policy=load_policy(section.policy) if section.policy else None,
                revocations=Revocations(max_entries=section.max_revocations),
            )
        except jwt.PyJWTError as exc:
            raise ConfigError(f"auth.jwks_file: not a usable JWKS: {exc}") from None

    def __repr__(self) -> str:  # never show keys
        return (
            f"Authorizer(mode={self.mode!r}, algorithms={self.algorithms}, "
            f"api_keys={len(self._api_keys)}, policy={self.policy is not None})"
        )

    # -- state -----------------------------------------------------------------

    @property
    def required(self) -> bool:
        """A WebSocket handshake needs a credential."""
        return self.mode != "none"

    @property
    def enabled(self) -> bool:
        """Room actions are checked (token grants or a policy function)."""
        return self.mode != "none" or self.policy is not None

    @property
    def api_protected(self) -> bool:
        """The HTTP API needs an API key or an admin token."""
        return self.mode != "none" or bool(self._api_keys)

    # -- authentication ------------------------------------------------------------

    def authenticate(self, credential: str | None, client_id: str | None = None) -> Principal:
        """A bearer credential → Principal; raises :class:`Unauthorized`.

        An API key is an admin whose client id is the one asked for
        (``client_id``); a JWT's client id is its ``sub``.
        """
        if not credential:
            raise Unauthorized("a token is required (Authorization: Bearer or ?token=)")
        if self.is_api_key(credential):
            return Principal(client_id=client_id, via="api_key", admin=True)
        if self.mode != "jwt":
            raise Unauthorized("invalid API key")
        principal = self.verify_jwt(credential)
        self.check_revoked(principal)
        return principal

    def check_revoked(self, principal: Principal) -> None:
        """Raise :class:`Unauthorized` if the principal's token or subject was revoked."""
        if principal.token is not None:
            why = self.revocations.refuses(principal.token)
            if why is not None:
                raise Unauthorized(why)

    def is_api_key(self, credential: str) -> bool:
        given = credential.encode()
        # compare_digest on every key: the time taken does not tell which one nearly matched.
        found = False
        for key in self._api_keys:
            found |= hmac.compare_digest(given, key)
        return found

    def verify_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg not in self.algorithms:
                raise Unauthorized(f"token algorithm {alg!r} is not accepted")
            claims = jwt.decode(
                token,
                self._key_for(alg, header.get("kid")),
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not CLIENT_ID_RE.match(sub):
            raise Unauthorized("token 'sub' is not a valid client id")
        defaults = self.default_grants
        rooms = (
            _patterns(claims.get("rooms"), "rooms") + self.default_rooms + defaults.get("rooms", ())
        )
        grants: dict[str, tuple[str, ...]] = {}
        for claim, action in CLAIMS.items():
            patterns = _patterns(claims.get(claim), claim) + defaults.get(claim, ())
            if action in ("join", "publish", "history"):
                patterns = rooms + patterns
            if patterns:
                grants[action] = patterns
        jti = claims.get("jti")
        return Principal(
            client_id=sub,
            via="jwt",
            admin=claims.get("admin") is True,
            grants=grants,
            claims=claims,
            token=TokenInfo(
                sub=sub,
                jti=jti if isinstance(jti, str) and jti else None,
                exp=_number(claims.get("exp")),
                iat=_number(claims.get("iat")),
            ),
        )

    def _key_for(self, alg: str, kid: Any) -> Any:
        if alg.startswith("HS"):
            if self._secret is None:
                raise Unauthorized(f"no secret configured for {alg}")
            return self._secret
        if self._jwks:
            jwk = self._jwks.get(kid) if isinstance(kid, str) else None
            if jwk is None:
                jwk = self._jwk_single
            if jwk is None:
                raise Unauthorized(f"no key with kid {kid!r} in the JWKS")
            return jwk.key
        if self._jwk_single is not None:
            return self._jwk_single.key
        if self._public_key is None:
            raise Unauthorized(f"no public key configured for {alg}")
        return self._public_key

    # -- authorization ---------------------------------------------------------------

    def allows(self, principal: Principal, action: str, target: str) -> bool:
        if self.policy is not None:
            try:
                return bool(self.policy(principal, action, target))
            except Exception:
                logger.exception(
                    "auth policy failed for %s %s %s", principal.client_id, action, target
                )
                return False
        if self.mode == "none":
            return True
        return principal.allows(action, target)

    @staticmethod
    def principal_of(conn: Connection) -> Principal:
        principal = conn.meta.get("principal")
        return principal if isinstance(principal, Principal) else Principal(client_id=conn.id)

    def authorize(self, conn: Connection, action: str, target: str) -> None:
        """``node.authorize``: raise Forbidden unless ``conn`` may do ``action`` on ``target``."""
        if not self.allows(self.principal_of(conn), action, target):
            raise self.refusal(action, target)

    def refusal(self, action: str, target: str) -> Forbidden:
        """The ``forbidden`` error for ``action`` on ``target`` (counted in ``refused``)."""
        self.refused += 1
        text = _REFUSALS.get(action)
        if action == "upload" and not target:
            text = "upload a file that feeds no job{}"
        if text is None:  # a room action
            return Forbidden(f"not allowed to {action} room '{target}'", room=target, action=action)
        return Forbidden(f"not allowed to {text.format(target)}", action=action, target=target)
