"""The inter-node message format (brokers/redis/wire.py): every kind round-trips.

The frames carried are arbitrary encoded JSON, tabs and all; only the fields
before them are split on.
"""

from __future__ import annotations

import pytest

from wirehub.brokers.redis import wire
from wirehub.brokers.redis.scripts import PUBLISH_SCRIPT

FRAME = '{"type":"message","data":"a\\tb","offset":3}'


def b(text: str) -> bytes:
    return text.encode()


def test_a_room_message_round_trips_with_and_without_exclude():
    got = wire.decode(b(wire.message("node-1", "alice", 3, FRAME)))
    assert (got.kind, got.node, got.exclude, got.offset, got.frame) == (
        "M",
        "node-1",
        "alice",
        3,
        FRAME,
    )
    assert wire.decode(b(wire.message("n", None, 4, "{}"))).exclude is None


def test_the_publish_script_appends_offset_and_frame_to_the_same_prefix():
    # What the Lua script sends: ARGV[4] .. off .. '\t' .. frame.
    assert "ARGV[4] .. off .. '\\t' .. frame" in PUBLISH_SCRIPT
    line = wire.message_prefix("n2", "bob") + "17\t" + FRAME
    assert line == wire.message("n2", "bob", 17, FRAME)
    got = wire.decode(b(line))
    assert (got.node, got.exclude, got.offset, got.frame) == ("n2", "bob", 17, FRAME)


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (wire.presence("n", FRAME), {"kind": "P", "node": "n", "frame": FRAME}),
        (wire.presence("", FRAME), {"kind": "P", "node": "", "frame": FRAME}),
        (wire.gap("n", 42, FRAME), {"kind": "G", "node": "n", "marker": 42, "frame": FRAME}),
        (wire.direct("c\u00e9", FRAME), {"kind": "D", "client": "c\u00e9", "frame": FRAME}),
        (wire.kick("c1"), {"kind": "K", "client": "c1"}),
        (wire.broadcast("n", FRAME), {"kind": "B", "node": "n", "frame": FRAME}),
    ],
)
def test_every_kind_round_trips(line, fields):
    got = wire.decode(b(line))
    assert {k: getattr(got, k) for k in fields} == fields


def test_a_revocation_notice_round_trips():
    got = wire.decode(wire.revocation("n", b'{"kind":"jti","value":"x\\ty"}'))
    assert (got.kind, got.node, got.body) == ("R", "n", b'{"kind":"jti","value":"x\\ty"}')


@pytest.mark.parametrize("data", [b"", b"Z\tx", b"M\tn\tx", b"G\tn\tnot-a-number\t{}", b"K"])
def test_unknown_or_truncated_messages_are_refused(data):
    with pytest.raises(ValueError):
        wire.decode(data)
