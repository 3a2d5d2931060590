"""Tokens on live connections: expiry timers, the sub/jti index, revocations.

A WebSocket lives for hours; the token it showed at the handshake does not.
:class:`Sessions` keeps every token-authenticated connection honest:

* **one timer per connection** (a ``loop.call_at`` handle, never a periodic scan):
  ``token.expiring`` is sent ``warning`` seconds before ``exp`` (half the remaining
  life of a token shorter than twice that), and the connection
  is closed with :data:`TOKEN_EXPIRED` (4401) at ``exp + grace`` unless a refresh
  moved ``exp`` first (the handle is then replaced, still one per connection);
* **an index** ``sub -> connections`` and ``jti -> connections``, so closing what a
  revocation names costs the size of the answer, not a scan over every client.

:class:`Revocations` is the bounded in-memory set of revoked token ids and
subjects, each entry kept until it expires. The web adapter refuses a revoked
token at the handshake and on refresh; a distributed broker mirrors the set
through Redis so every node (and a restarted one) refuses it too.

Sans web: the node calls :meth:`Sessions.attach` / :meth:`Sessions.detach` as
peers come and go; the adapter's principal (``conn.meta["principal"]``) carries
a :class:`TokenInfo` as its ``token`` attribute.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wirehub.core.protocol import CloseCode, encode

if TYPE_CHECKING:
    from wirehub.core.connection import Connection

__all__ = ["REVOKED", "TOKEN_EXPIRED", "Revocation", "Revocations", "Sessions", "TokenInfo"]

logger = logging.getLogger("wirehub.tokens")

#: Close codes, kept here as names for the clients (they live in ``CloseCode``).
TOKEN_EXPIRED = CloseCode.TOKEN_EXPIRED
REVOKED = CloseCode.REVOKED


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What the lifecycle needs of a verified token (times are Unix seconds)."""

    sub: str
    jti: str | None = None
    exp: float | None = None
    iat: float | None = None


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: a token id, or every token of a subject issued before ``before``."""

    #: ``"jti"`` or ``"sub"``.
    kind: str
    value: str
    #: Unix time after which the entry is forgotten (the token would have expired anyway).
    until: float
    #: For ``sub``: tokens with an ``iat`` before this (or none) are refused.
    before: float | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "value": self.value, "until": self.until}
        if self.before is not None:
            body["before"] = self.before
        return body

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Revocation:
        kind = data.get("kind")
        if kind not in ("jti", "sub"):
            raise ValueError(f"revocation kind must be 'jti' or 'sub', got {kind!r}")
        before = data.get("before")
        return cls(
            kind=str(kind),
            value=str(data["value"]),
            until=float(data["until"]),
            before=None if before is None else float(before),
        )


class Revocations:
    """Revoked token ids and subjects, each kept until its ``until``; at most ``max_entries``.

    Expired entries go lazily (on insert, and when a lookup meets one). When the
    set is full the entry closest to its expiry is dropped first — it is the one
    whose token would stop working soonest anyway — and counted in ``dropped``.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str], Revocation] = {}
        # (until, kind, value); may hold stale pairs (an entry re-revoked later).
        self._heap: list[tuple[float, str, str]] = []
        #: Entries dropped because the set was full (logged; a sign to raise the bound).
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Revocation]:
        return iter(list(self._entries.values()))

    def add(self, revocation: Revocation) -> bool:
        """Record ``revocation``; False when it had already expired (nothing kept)."""
        now = self._clock()
        if revocation.until <= now:
            return False
        key = (revocation.kind, revocation.value)
        old = self._entries.get(key)
        if old is not None:
            # Keep the wider of the two: the later expiry, the later cut-off.
            before = revocation.before
            if old.before is not None and before is not None:
                before = max(before, old.before)
            revocation = Revocation(
                revocation.kind, revocation.value, max(old.until, revocation.until), before
            )
        self._entries[key] = revocation
        heapq.heappush(self._heap, (revocation.until, revocation.kind, revocation.value))
        self._purge(now)
        return True

    def refuses(self, token: TokenInfo) -> str | None:
        """Why ``token`` is revoked (``"token revoked"`` / ``"subject revoked"``), or None."""
        if not self._entries:
            return None
        now = self._clock()
        if token.jti is not None:
            entry = self._live(("jti", token.jti), now)
            if entry is not None:
                return "token revoked"
        entry = self._live(("sub", token.sub), now)
        if entry is not None and (
            token.iat is None or entry.before is None or token.iat < entry.before
        ):
            return "subject revoked"
        return None

    def _live(self, key: tuple[str, str], now: float) -> Revocation | None:
        entry = self._entries.get(key)
        if entry is not None and entry.until <= now:
            del self._entries[key]
            return None
        return entry

    def _purge(self, now: float) -> None:
        heap, entries = self._heap, self._entries
        while heap:
            until, kind, value = heap[0]
            entry = entries.get((kind, value))
            if entry is None or entry.until != until:
                heapq.heappop(heap)  # stale pair
                continue
            if until <= now:
                heapq.heappop(heap)
                del entries[(kind, value)]
                continue
            if len(entries) <= self.max_entries:
                break
            heapq.heappop(heap)
            del entries[(kind, value)]
            self.dropped += 1
            logger.warning(
                "revocation set full (%d): dropped the %s revocation closest to expiry",
                self.max_entries,
                kind,
            )
        if len(heap) > 2 * len(entries) + 64:
            self._heap = [(e.until, e.kind, e.value) for e in entries.values()]
            heapq.heapify(self._heap)


@dataclass(eq=False, slots=True)
class _Tracked:
    token: TokenInfo
    handle: asyncio.TimerHandle | None = None
    warned: bool = False


class Sessions:
    """Expiry timers and the ``sub``/``jti`` index of token-authenticated connections.

    ``disconnect(conn, code, reason)`` is the node's own (the peer leaves its rooms).
    ``warning`` and ``grace`` are in seconds (``auth.expiry_warning`` / ``expiry_grace``).
    """

    def __init__(
        self,
        *,
        disconnect: Callable[[Connection, int, str], None],
        warning: float = 30.0,
        grace: float = 1.0,
    ) -> None:
        self._disconnect = disconnect
        self.warning = warning
        self.grace = grace
        self._tracked: dict[Connection, _Tracked] = {}
        self.by_sub: dict[str, set[Connection]] = {}
        self.by_jti: dict[str, set[Connection]] = {}
        # Counters for stats and logs.
        self.expired = 0
        self.refreshed = 0
        self.revoked = 0

    def __len__(self) -> int:
        return len(self._tracked)

    def token_of(self, conn: Connection) -> TokenInfo | None:
        tracked = self._tracked.get(conn)
        return None if tracked is None else tracked.token

    # -- node callbacks ----------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """A peer connected: track it if its principal carries a token."""
        token = getattr(conn.meta.get("principal"), "token", None)
        if isinstance(token, TokenInfo):
            self.track(conn, token)

    def detach(self, conn: Connection) -> None:
        """A peer is gone: cancel its timer, drop it from the index (idempotent)."""
        tracked = self._tracked.pop(conn, None)
        if tracked is None:
            return
        if tracked.handle is not None:
            tracked.handle.cancel()
        self._unindex(conn, tracked.token)

    # -- tokens ------------------------------------------------------------------

    def track(self, conn: Connection, token: TokenInfo) -> None:
        """Start (or, after a refresh, restart) ``conn``'s timer for ``token``."""
        tracked = self._tracked.get(conn)
        if tracked is not None:
            if tracked.handle is not None:
                tracked.handle.cancel()
            self._unindex(conn, tracked.token)
            tracked.token, tracked.handle, tracked.warned = token, None, False
        else:
            tracked = self._tracked[conn] = _Tracked(token)
        self.by_sub.setdefault(token.sub, set()).add(conn)
        if token.jti is not None:
            self.by_jti.setdefault(token.jti, set()).add(conn)
        if token.exp is not None:
            # The lead is ``warning``, or half of what is left of a shorter token: a
            # client is never asked to refresh at once, over and over. Never
            # synchronously either: the adapter sends ``welcome`` right after connect.
            lead = min(self.warning, max(0.0, (token.exp - time.time()) / 2))
            tracked.handle = self._call_at(token.exp - lead, self._warn, conn, tracked)

    def refresh(self, conn: Connection, token: TokenInfo) -> None:
        """``conn`` proved a new token: move its timer and its index entries."""
        self.track(conn, token)
        self.refreshed += 1

    def _call_at(
        self, unix: float, callback: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + (unix - time.time()), callback, *args)

    def _warn(self, conn: Connection, tracked: _Tracked) -> None:
        if self._tracked.get(conn) is not tracked or tracked.token.exp is None:
            return
        exp = tracked.token.exp
        tracked.warned = True
        conn.send(encode({"type": "token.expiring", "exp": exp, "in": max(0.0, exp - time.time())}))
        tracked.handle = self._call_at(exp + self.grace, self._expire, conn, tracked)

    def _expire(self, conn: Connection, tracked: _Tracked) -> None:
        if self._tracked.get(conn) is not tracked:
            return
        self.expired += 1
        logger.info("[%s] token expired, closing (%d)", conn.id, TOKEN_EXPIRED)
        self._disconnect(conn, TOKEN_EXPIRED, "token expired")
        self.detach(conn)

    # -- revocation ----------------------------------------------------------------

    def matching(self, revocation: Revocation) -> list[Connection]:
        """The connections whose token ``revocation`` names (from the index, no scan)."""
        if revocation.kind == "jti":
            return list(self.by_jti.get(revocation.value, ()))
        found = []
        for conn in self.by_sub.get(revocation.value, ()):
            token = self._tracked[conn].token
            if token.iat is None or revocation.before is None or token.iat < revocation.before:
                found.append(conn)
        return found

    def close_revoked(self, revocation: Revocation) -> int:
        """Close every connection ``revocation`` names with :data:`REVOKED`; how many."""
        conns = self.matching(revocation)
        for conn in conns:
            logger.info("[%s] %s revoked, closing (%d)", conn.id, revocation.kind, REVOKED)
            self._disconnect(conn, REVOKED, "revoked")
            self.detach(conn)
        self.revoked += len(conns)
        return len(conns)

    def _unindex(self, conn: Connection, token: TokenInfo) -> None:
        for table, key in ((self.by_sub, token.sub), (self.by_jti, token.jti)):
            if key is None:
                continue
            conns = table.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del table[key]
