"""The client's reconnect/recovery decisions without sockets (wirehub.client.state).

Each test drives :class:`Recovery` the way the connection does (a ``joined``
reply, messages, a close code, the hub's shutdown notice) and checks the
decision a user would notice: which messages reach the handlers, with which
``since`` each room is re-joined, whether and when the client comes back.
"""

from __future__ import annotations

import itertools
import random

import pytest

from wirehub.client import Disconnected, TokenRevoked
from wirehub.client.state import NO_RECONNECT_CODES, Recovery
from wirehub.core.protocol import CloseCode


def msg(room: str, offset: int, data: object = None) -> dict[str, object]:
    return {"type": "message", "room": room, "offset": offset, "data": data}


def delivered(state: Recovery, frames: list[dict[str, object]]) -> list[tuple[int, object]]:
    """(offset, replay mark) of the frames the handlers would see, in order."""
    return [(f["offset"], f.get("replay")) for f in frames if state.message(f)]  # type: ignore[misc]


# -- offsets, replays, dedupe --------------------------------------------------------------


def test_a_join_starts_at_the_head_and_later_messages_pass_in_order():
    state = Recovery()
    state.joined("lobby", since=None, head=7)
    assert state.offsets == {"lobby": 7}
    assert delivered(state, [msg("lobby", 6), msg("lobby", 8), msg("lobby", 9)]) == [
        (8, None),
        (9, None),
    ]
    assert state.offsets == {"lobby": 9}


def test_a_reconnect_rejoins_every_room_since_its_last_offset_in_join_order():
    state = Recovery()
    state.joined("a", since=None, head=3)
    state.joined("b", since=None, head=0)
    state.joined("c", since=None, head=10)
    delivered(state, [msg("a", 4), msg("b", 1), msg("b", 2)])
    state.acked("c", 12)  # our own publish (no echo): offsets up to 12 were queued to us
    state.left("b")
    assert state.rejoin_plan() == [("a", 4), ("c", 12)]


def test_replayed_messages_are_marked_and_duplicates_dropped():
    state = Recovery()
    state.joined("feed", since=None, head=2)
    delivered(state, [msg("feed", 3)])
    # After a reconnect: re-joined since 3, the hub's head is 6, and it replays 2..6
    # (a replay may overlap what the client saw before the drop).
    state.joined("feed", since=3, head=6, replay_kind="missed")
    frames = [msg("feed", o) for o in (2, 3, 4, 5, 6, 6, 7)]
    assert delivered(state, frames) == [
        (4, "missed"),
        (5, "missed"),
        (6, "missed"),
        (7, None),  # live again after the replay's last offset
    ]
    assert state.offsets == {"feed": 7}


def test_join_since_marks_history_and_an_empty_replay_marks_nothing():
    state = Recovery()
    state.joined("log", since=0, head=2)
    assert delivered(state, [msg("log", 1), msg("log", 2), msg("log", 3)]) == [
        (1, "history"),
        (2, "history"),
        (3, None),
    ]
    state.joined("quiet", since=5, head=5, replay_kind="missed")
    assert delivered(state, [msg("quiet", 6)]) == [(6, None)]


def test_messages_of_unknown_rooms_or_without_offsets_pass_untouched():
    state = Recovery()
    frame = {"type": "message", "room": "elsewhere", "offset": 1}
    assert state.message(frame) and "replay" not in frame
    state.joined("lobby", since=None, head=4)
    assert state.message({"type": "message", "room": "lobby", "offset": None})
    assert state.offsets == {"lobby": 4}


# -- close codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [1001, 1006, 1011, CloseCode.SLOW_CONSUMER, CloseCode.HEARTBEAT_TIMEOUT]
)
def test_going_away_and_network_failures_reconnect_with_backoff(code):
    decision = Recovery().on_close(code, "bye")
    assert decision.action == "reconnect" and not decision.immediately and decision.error is None


@pytest.mark.parametrize("code", sorted(NO_RECONNECT_CODES - {CloseCode.REVOKED}))
def test_no_reconnect_codes_stop_without_an_error(code):
    decision = Recovery().on_close(code, "")
    assert decision.action == "stop" and decision.error is None
    assert str(int(code)) in decision.why


def test_4409_replaced_stops_the_client():
    assert Recovery().on_close(CloseCode.REPLACED, "replaced").action == "stop"


def test_4403_revoked_stops_for_good_with_token_revoked():
    decision = Recovery(renewable_token=True).on_close(CloseCode.REVOKED, "revoked")
    assert decision.action == "stop"
    assert isinstance(decision.error, TokenRevoked)
    assert str(decision.error) == "the hub revoked this client's token (4403 revoked)"
    pending = Recovery.pending_error(CloseCode.REVOKED, "revoked")
    assert isinstance(pending, TokenRevoked) and pending.code == "revoked"


def test_4401_reconnects_at_once_with_get_token_and_stops_without_it():
    renewable = Recovery(renewable_token=True).on_close(CloseCode.TOKEN_EXPIRED, "token expired")
    assert renewable.action == "reconnect" and renewable.immediately
    fixed = Recovery(renewable_token=False).on_close(CloseCode.TOKEN_EXPIRED, "token expired")
    assert fixed.action == "stop" and isinstance(fixed.error, Disconnected)
    assert "no get_token to renew it" in str(fixed.error)


def test_close_by_the_user_or_reconnect_off_never_reconnects():
    assert Recovery().on_close(1006, closing=True).action == "stop"
    off = Recovery(reconnect=False).on_close(1006)
    assert off.action == "stop" and off.error is None
    # A revocation is still reported when reconnect is off.
    assert isinstance(Recovery(reconnect=False).on_close(CloseCode.REVOKED).error, TokenRevoked)


def test_pending_requests_fail_with_disconnected_and_the_close_code():
    error = Recovery.pending_error(1006, "")
    assert type(error) is Disconnected and str(error) == "connection closed (1006)"
    assert str(Recovery.pending_error(1001, "going away")) == "connection closed (1001 going away)"


# -- delays ----------------------------------------------------------------------------------


def test_delays_follow_full_jitter_backoff_and_stop_after_max_attempts():
    state = Recovery(backoff_initial=0.1, backoff_cap=0.4, max_attempts=5, rng=random.Random(1))
    delays = list(state.delays())
    assert len(delays) == 5
    caps = [0.1, 0.2, 0.4, 0.4, 0.4]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))


def test_unlimited_attempts_never_end():
    state = Recovery(max_attempts=None, backoff_cap=0.01)
    assert len(list(itertools.islice(state.delays(), 1000))) == 1000


def test_an_expired_token_reconnects_without_waiting_first():
    state = Recovery(backoff_initial=1.0, rng=random.Random(2))
    first, second = itertools.islice(state.delays(immediately=True), 2)
    assert first == 0.0 and 0 <= second <= 1.0


def test_the_hub_reconnect_window_spreads_the_first_attempt_once():
    state = Recovery(backoff_initial=0.05, backoff_cap=0.05, rng=random.Random(3))
    assert state.shutdown_notice([1000, 3000]) == (1.0, 3.0)
    firsts = []
    for _ in range(200):
        state.shutdown_notice([1000, 3000])
        first, second = itertools.islice(state.delays(immediately=True), 2)
        firsts.append(first)
        assert second <= 0.05  # only the first attempt waits for the window
    assert all(1.0 <= f <= 3.0 for f in firsts)
    assert max(firsts) - min(firsts) > 1.0  # spread over the window, not one instant
    # Used once: the next drop (no new notice) backs off normally.
    assert next(state.delays()) <= 0.05


@pytest.mark.parametrize("bad", [None, [1000], "1000", [1, 2, 3], ["x", 1]])
def test_a_malformed_window_is_ignored(bad):
    state = Recovery()
    assert state.shutdown_notice(bad) is None and state.window is None


def test_an_inverted_or_negative_window_is_clamped():
    state = Recovery()
    assert state.shutdown_notice([-500, -1000]) == (0.0, 0.0)
    assert state.shutdown_notice([3000, 1000]) == (3.0, 3.0)
