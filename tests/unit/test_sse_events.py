"""The SSE form of each frame (web/sse.py), without sockets."""

from __future__ import annotations

from wirehub.core.outbound import Outbound
from wirehub.core.protocol import encode, message_frame
from wirehub.web.sse import event_bytes, joined_events


def test_a_message_is_one_event_whose_id_is_its_offset():
    frame = message_frame("news", "alice", {"text": "a\nb"}, 42, ts=1.5)
    assert event_bytes(Outbound(frame)) == f"id: 42\nevent: message\ndata: {frame}\n\n".encode()


def test_pings_are_comments_pongs_and_binary_frames_are_not_sent():
    assert event_bytes(Outbound('{"type":"ping"}')) == b": ping\n\n"
    assert event_bytes(Outbound('{"type":"pong","ts":1}')) is None
    assert event_bytes(Outbound(b"\x00\x01")) is None
    assert event_bytes(Outbound(encode({"type": "bad\ntype"}))) is None


def test_other_frames_are_named_by_their_type():
    text = encode({"type": "presence", "room": "r", "event": "join", "client_id": "c"})
    assert event_bytes(Outbound(text)) == f"event: presence\ndata: {text}\n\n".encode()


def test_joined_gets_the_offset_as_id_only_on_a_fresh_subscription():
    fresh = encode({"type": "joined", "room": "r", "offset": 7, "member_count": 1})
    assert joined_events(fresh, None) == f"id: 7\nevent: joined\ndata: {fresh}\n\n".encode()
    resumed = encode({"type": "joined", "room": "r", "offset": 7, "recovered": True})
    assert joined_events(resumed, 3) == f"event: joined\ndata: {resumed}\n\n".encode()


def test_an_incomplete_resume_adds_exactly_one_gap():
    joined = {"type": "joined", "room": "r", "offset": 10, "recovered": False, "first_offset": 8}
    events = joined_events(encode(joined), 2).decode().split("\n\n")
    assert len(events) == 3 and events[2] == ""  # joined, gap, and nothing else
    assert events[1].splitlines() == [
        "id: 7",
        "event: gap",
        'data: {"type":"gap","room":"r","reason":"history_trimmed","since":2,'
        '"first_offset":8,"offset":10}',
    ]
    reset = joined_events(encode({**joined, "first_offset": 11}), 40).decode()
    assert '"reason":"history_reset"' in reset and "id: 10\nevent: gap\n" in reset
