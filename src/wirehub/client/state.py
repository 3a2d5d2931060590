"""The client's reconnect and recovery decisions, without a socket (sans-I/O).

:class:`Recovery` holds what a :class:`~wirehub.client.HubClient` must remember
across socket drops (every joined room and the last offset seen in it, the
hub's last ``reconnect`` window) and makes each decision the connection then
carries out:

- which messages to deliver: a replayed offset already seen is dropped, and
  replays are marked ``"history"`` (asked for with ``since``) or ``"missed"``
  (recovered after a reconnect);
- with which ``since`` to re-join each room after a reconnect;
- what a close code means (:meth:`Recovery.on_close`): reconnect with backoff,
  reconnect at once with a fresh token (4401 with ``get_token``), or stop for
  good (4403, 4401 without a way to renew the token, :data:`NO_RECONNECT_CODES`);
- how long to wait before each attempt (:meth:`Recovery.delays`): a random delay
  inside the hub's ``reconnect {delay_ms}`` window first, then full-jitter backoff.

Keeping them here lets tests drive every branch with plain values
(tests/unit/test_client_state.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from wirehub.backoff import backoff
from wirehub.client.errors import Disconnected, TokenRevoked
from wirehub.core.protocol import CloseCode
from wirehub.errors import WirehubError

__all__ = ["NO_RECONNECT_CODES", "CloseDecision", "Recovery", "RoomCursor"]

#: Close codes after which reconnecting would be wrong: the id is invalid, another
#: connection took it over, an operator kicked this client, policy refused it, or
#: its token was revoked.
NO_RECONNECT_CODES = frozenset(
    {
        CloseCode.BAD_CLIENT_ID,
        CloseCode.REPLACED,
        CloseCode.KICKED,
        CloseCode.POLICY,
        CloseCode.REVOKED,
    }
)


def _code_reason(code: int, reason: str) -> str:
    return f"{int(code)} {reason}".strip()


@dataclass
class RoomCursor:
    """One joined room: the highest offset seen, and the replay under way, if any."""

    name: str
    #: Highest offset seen (message, joined head or own ack); a re-join asks ``since`` it.
    offset: int = 0
    #: While a replay arrives: its last offset and kind ("history" or "missed").
    replay_until: int = 0
    replay_kind: str | None = None


@dataclass(frozen=True)
class CloseDecision:
    """What to do after the socket closed with some code."""

    #: "reconnect", or "stop" for good.
    action: Literal["reconnect", "stop"]
    #: Reconnect without waiting first (the token expired; a fresh one fixes it).
    immediately: bool = False
    #: Why the client stopped for good when the hub decided it (kept as ``client.error``).
    error: WirehubError | None = None
    #: One line for the log.
    why: str = ""


class Recovery:
    """Rooms, offsets and reconnect policy of one logical connection; no I/O.

    ``renewable_token`` is true when the client has ``get_token`` (so a 4401
    close is healed by reconnecting with a fresh token). ``rng`` makes the
    delays reproducible in tests.
    """

    def __init__(
        self,
        *,
        reconnect: bool = True,
        renewable_token: bool = False,
        backoff_initial: float = 0.2,
        backoff_cap: float = 10.0,
        max_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.reconnect = reconnect
        self.renewable_token = renewable_token
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.max_attempts = max_attempts
        self.rooms: dict[str, RoomCursor] = {}
        #: The hub's ``reconnect`` window (seconds) from its last shutdown notice.
        self.window: tuple[float, float] | None = None
        self._rng = rng or random.Random()

    # -- rooms and offsets ---------------------------------------------------------------

    def joined(
        self, room: str, *, since: int | None, head: int, replay_kind: str = "history"
    ) -> RoomCursor:
        """A ``joined`` reply arrived (before any message it replays): track the room.

        Without ``since`` the room starts at the hub's ``head`` offset; with it the
        hub replays what came after ``since`` up to ``head``, marked ``replay_kind``.
        """
        cursor = self.rooms.get(room) or RoomCursor(room)
        if since is None:
            cursor.offset = max(cursor.offset, head)
        else:
            cursor.offset = since
            cursor.replay_until = head
            cursor.replay_kind = replay_kind
        self.rooms[room] = cursor
        return cursor

    def left(self, room: str) -> None:
        """The room was left (or a re-join refused): it is not re-joined again."""
        self.rooms.pop(room, None)

    def acked(self, room: str, offset: int) -> None:
        """Our own publish was acked at ``offset`` (without echo, so it never arrives).

        Every earlier message of the room was queued to us before the ack, so the
        offset is safe to recover from.
        """
        cursor = self.rooms.get(room)
        if cursor is not None:
            cursor.offset = max(cursor.offset, offset)

    def message(self, frame: dict[str, Any]) -> bool:
        """A ``message`` frame arrived: False to drop it (an offset already seen).

        Marks a replayed one with ``frame["replay"] = "history" | "missed"``.
        """
        cursor = self.rooms.get(str(frame.get("room", "")))
        offset = frame.get("offset")
        if cursor is None or not isinstance(offset, int):
            return True
        if offset <= cursor.offset:
            return False  # already seen (replayed after a reconnect)
        cursor.offset = offset
        if cursor.replay_kind is not None:
            if offset <= cursor.replay_until:
                frame["replay"] = cursor.replay_kind
            if offset >= cursor.replay_until:
                cursor.replay_kind = None
        return True

    def rejoin_plan(self) -> list[tuple[str, int]]:
        """``(room, since)`` for every room to re-join after a reconnect, in join order."""
        return [(cursor.name, cursor.offset) for cursor in self.rooms.values()]

    @property
    def offsets(self) -> dict[str, int]:
        """Joined rooms and the last offset seen in each."""
        return {name: cursor.offset for name, cursor in self.rooms.items()}

    # -- closes and reconnects -----------------------------------------------------------

    def shutdown_notice(self, delay_ms: object) -> tuple[float, float] | None:
        """``reconnect {delay_ms: [min, max]}`` arrived: remember the window (seconds)."""
        if isinstance(delay_ms, list) and len(delay_ms) == 2:
            try:
                low, high = (max(0.0, float(v) / 1000) for v in delay_ms)
            except (TypeError, ValueError):
                return None
            self.window = (low, max(low, high))
        return self.window

    @staticmethod
    def pending_error(code: int, reason: str) -> Disconnected:
        """The error for requests whose reply was lost with a socket closed with ``code``."""
        if code == CloseCode.REVOKED:
            return TokenRevoked(f"token revoked ({code} {reason})")
        return Disconnected(f"connection closed ({_code_reason(code, reason)})")

    def on_close(self, code: int, reason: str = "", *, closing: bool = False) -> CloseDecision:
        """Decide what follows a close with ``code`` (``closing``: the user called close)."""
        if closing:
            return CloseDecision("stop", why="closed by the client")
        if code == CloseCode.REVOKED:
            error: Disconnected = TokenRevoked(
                f"the hub revoked this client's token ({code} {reason})"
            )
            return CloseDecision("stop", error=error, why=str(error))
        if code == CloseCode.TOKEN_EXPIRED and not self.renewable_token:
            error = Disconnected(
                f"the token expired ({code} {reason}) and there is no get_token to renew it"
            )
            return CloseDecision("stop", error=error, why=str(error))
        if not self.reconnect:
            return CloseDecision("stop", why="reconnect is off")
        if code == CloseCode.TOKEN_EXPIRED:
            return CloseDecision("reconnect", immediately=True, why="token expired")
        if code in NO_RECONNECT_CODES:
            return CloseDecision("stop", why=f"closed by the hub ({_code_reason(code, reason)})")
        return CloseDecision("reconnect", why=f"connection closed ({_code_reason(code, reason)})")

    def delays(self, *, immediately: bool = False) -> Iterator[float]:
        """The wait before each reconnect attempt; ends after ``max_attempts``.

        The first attempt waits a random delay in the hub's ``reconnect`` window
        when it sent one (spread over it, never before it: no reconnect storm),
        else nothing when ``immediately``; later ones follow the full-jitter
        backoff. The window is used once.
        """
        window, self.window = self.window, None
        steps = backoff(initial=self.backoff_initial, cap=self.backoff_cap, rng=self._rng)
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            attempt += 1
            if attempt == 1 and window is not None:
                yield self._rng.uniform(*window)
            elif attempt == 1 and immediately:
                yield 0.0
            else:
                yield next(steps)
