"""Live connections stay trustworthy: token refresh, revocation, grants on every action.

Authentication happens once, at the handshake; a WebSocket lives for hours. The
:class:`TokenLifecycle` the hub builds from ``[auth]`` keeps it honest afterwards:

* **expiry** — :class:`wirehub.core.tokens.Sessions` (one timer per connection):
  ``token.expiring`` before ``exp``, close 4401 at ``exp + expiry_grace``;
* **refresh** — ``{"type":"refresh","token":...}`` swaps in a new token of the
  same ``sub``; its grants replace the old ones at once (rooms no longer granted
  are left with ``{"type":"left","room":...,"reason":"revoked"}``); a bad or
  foreign token gets ``error unauthorized`` and changes nothing;
* **revocation** — :meth:`TokenLifecycle.revoke` (``POST /api/auth/revoke``)
  closes every connection of a subject or token with 4403 on every node (the
  Redis broker carries it) and refuses that token until it would have expired;
* **grants on every action** — guards on ``job.submit``, ``upload.start`` and
  ``job.cancel``, and the gate on ``$job:<id>`` rooms (the submitter may read
  its job's events; finding the submitter needs the job store, hence async).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from wirehub.auth import Authorizer, Principal
from wirehub.core.protocol import Frame, encode, req_str
from wirehub.core.tokens import Revocation, Sessions
from wirehub.errors import BadRequest, Unauthorized

if TYPE_CHECKING:
    from wirehub.core.connection import Connection
    from wirehub.core.node import Node

__all__ = ["JOB_ROOM_PREFIX", "TokenLifecycle"]

logger = logging.getLogger("wirehub.auth")

#: Rooms of one job's events (``wirehub.jobs.component.job_room``).
JOB_ROOM_PREFIX = "$job:"
#: Longest token accepted in a ``refresh`` frame (as on the handshake, well above real JWTs).
MAX_TOKEN = 32 * 1024

JobOwner = Callable[[str], Awaitable[str | None]]


class TokenLifecycle:
    """Refresh, revocation and the non-room grants of one node.

    ``job_owner(job_id)`` returns the client id that submitted a job (None:
    unknown); ``share(revocation)`` hands a revocation to the other nodes and
    returns whether it got there (None in embedded mode).
    """

    def __init__(
        self,
        auth: Authorizer,
        node: Node,
        *,
        warning: float = 30.0,
        grace: float = 1.0,
        revoke_ttl: float = 24 * 3600.0,
        job_owner: JobOwner | None = None,
    ) -> None:
        self.auth = auth
        self.node = node
        self.revoke_ttl = revoke_ttl
        self.sessions = Sessions(disconnect=node.disconnect, warning=warning, grace=grace)
        self._job_owner = job_owner
        self.share: Callable[[Revocation], Awaitable[bool]] | None = None
        self.refresh_refused = 0

    @classmethod
    def from_settings(
        cls, auth: Authorizer, node: Node, section: Any, *, job_owner: JobOwner | None = None
    ) -> TokenLifecycle:
        """From an ``AuthSettings`` (duck-typed, like :meth:`Authorizer.from_settings`)."""
        return cls(
            auth,
            node,
            warning=section.expiry_warning,
            grace=section.expiry_grace,
            revoke_ttl=section.revoke_ttl,
            job_owner=job_owner,
        )

    def install(self) -> None:
        """Hook into the node: nothing at all with auth off (no per-frame cost)."""
        if not self.auth.enabled:
            return
        node = self.node
        if self.auth.mode == "jwt":
            node.sessions = self.sessions
            node.on("refresh", self.ws_refresh)
        node.guards["job.submit"] = self._guard_submit
        node.guards["upload.start"] = self._guard_upload
        node.guards["job.cancel"] = self._guard_cancel
        node.room_gate = self._job_room_gate
        node.gated_prefix = JOB_ROOM_PREFIX

    # -- refresh -------------------------------------------------------------------

    def ws_refresh(self, conn: Connection, frame: Frame) -> Frame:
        """``refresh {token}`` → ``refreshed {exp}``; the new grants apply at once."""
        raw = req_str(frame, "token", max_len=MAX_TOKEN)
        old = self.auth.principal_of(conn)
        if old.via != "jwt":
            raise BadRequest("this connection has no token to refresh (API key or auth off)")
        try:
            new = self.auth.verify_jwt(raw)
            self.auth.check_revoked(new)
            if new.client_id != conn.id:
                raise Unauthorized("the new token's 'sub' is not this connection's client id")
        except Unauthorized as exc:
            self.refresh_refused += 1
            logger.info("[%s] refresh refused: %s", conn.id, exc.message)
            raise
        assert new.token is not None
        conn.meta["principal"] = new
        self.sessions.refresh(conn, new.token)
        dropped = self._drop_ungranted(conn, new)
        logger.debug("[%s] token refreshed (exp %s, left %s)", conn.id, new.token.exp, dropped)
        return {"type": "refreshed", "exp": new.token.exp}

    def _drop_ungranted(self, conn: Connection, principal: Principal) -> list[str]:
        """Leave every room the new grants no longer allow (``left`` reason ``revoked``)."""
        owned = conn.meta.get("owned_rooms")
        dropped = []
        for room in sorted(conn.rooms):
            if self.auth.allows(principal, "join", room):
                continue
            if isinstance(owned, set) and room in owned:
                continue  # the submitter reads its own job's room whatever its grants
            self.node.rooms.leave(conn, room)
            conn.send(encode({"type": "left", "room": room, "reason": "revoked"}))
            dropped.append(room)
        return dropped

    # -- revocation ----------------------------------------------------------------

    async def revoke(
        self, *, sub: str | None = None, jti: str | None = None, until: float | None = None
    ) -> tuple[Revocation, int, bool | None]:
        """Revoke a subject's tokens (issued until now) or one token id, on every node.

        Returns (the revocation, connections closed on this node, shared with the
        other nodes: True / False when Redis was out of reach / None in embedded mode).
        """
        if (sub is None) == (jti is None):
            raise BadRequest("give exactly one of 'sub' and 'jti'")
        now = time.time()
        if jti is not None:
            if until is None:
                known = [
                    token.exp
                    for conn in self.sessions.by_jti.get(jti, ())
                    if (token := self.sessions.token_of(conn)) is not None and token.exp is not None
                ]
                until = max(known) + self.auth.leeway if known else now + self.revoke_ttl
            revocation = Revocation("jti", jti, until)
        else:
            assert sub is not None
            revocation = Revocation("sub", sub, until or now + self.revoke_ttl, before=now)
        closed = self.apply(revocation)
        shared = None if self.share is None else await self.share(revocation)
        logger.info(
            "revoked %s %r until %.0f: %d connections closed here%s",
            revocation.kind,
            revocation.value,
            revocation.until,
            closed,
            "" if shared in (None, True) else " (not shared: Redis unreachable, retried later)",
        )
        return revocation, closed, shared

    def apply(self, revocation: Revocation) -> int:
        """Record ``revocation`` and close what it names here (also for other nodes' ones)."""
        self.auth.revocations.add(revocation)
        return self.sessions.close_revoked(revocation)

    # -- grants of the non-room actions --------------------------------------------------

    def _guard_submit(self, conn: Connection, frame: Frame) -> None:
        job = frame.get("job")
        if isinstance(job, str):  # else the handler answers bad_request
            self.auth.authorize(conn, "job.submit", job)

    def _guard_upload(self, conn: Connection, frame: Frame) -> None:
        job = frame.get("job")
        target = job if isinstance(job, str) else ""
        self.auth.authorize(conn, "upload", target)
        if target:
            # An upload with a job submits that job when it completes.
            self.auth.authorize(conn, "job.submit", target)

    def _guard_cancel(self, conn: Connection, frame: Frame) -> Awaitable[None] | None:
        job_id = frame.get("job_id")
        if not isinstance(job_id, str) or not job_id or len(job_id) > 64:
            return None  # the handler answers bad_request
        if self.auth.allows(self.auth.principal_of(conn), "job.cancel", job_id):
            return None
        return self._check_owner(conn, "job.cancel", job_id)

    async def _job_room_gate(self, conn: Connection, room: str, since: int | None) -> None:
        """A join of ``$job:<id>``: a grant for the room, or being the job's submitter."""
        principal = self.auth.principal_of(conn)
        if self.auth.allows(principal, "join", room) and (
            since is None or self.auth.allows(principal, "history", room)
        ):
            return
        job_id = room[len(JOB_ROOM_PREFIX) :]
        await self._check_owner(conn, "job.events", job_id)
        owned = conn.meta.setdefault("owned_rooms", set())
        if isinstance(owned, set):
            owned.add(room)

    async def _check_owner(self, conn: Connection, action: str, job_id: str) -> None:
        owner = None if self._job_owner is None else await self._job_owner(job_id)
        if owner is None or owner != conn.id:
            raise self.auth.refusal(action, job_id)
