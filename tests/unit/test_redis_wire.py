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


def test_a_batch_of_room_messages_round_trips_with_and_without_exclude():
    multibyte = '{"type":"message","data":"caf\u00e9 \U0001f600\\\\t","offset":5}'
    sent = [("alice", 3, FRAME), (None, 4, "{}"), ("b\u00e9", 5, multibyte)]
    got = wire.decode(b(wire.messages("node-1", sent)))
    assert (got.kind, got.node) == ("Z", "node-1")
    assert wire.records(got.body) == sent


def test_a_truncated_batch_is_refused_whole():
    line = b(wire.messages("n", [(None, 1, FRAME), (None, 2, FRAME)]))
    body = wire.decode(line).body
    for cut in (1, 5, len(FRAME) // 2):
        with pytest.raises(ValueError):
            wire.records(body[:-cut])


def test_the_publish_script_builds_the_records_the_decoder_reads():
    # What the Lua script sends per message: exclude, offset, byte length, frame.
    assert "x .. '\\t' .. off .. '\\t' .. #frame .. '\\t' .. frame" in PUBLISH_SCRIPT
    assert "'Z\\t' .. node .. '\\t' .. table.concat(lines[channel])" in PUBLISH_SCRIPT
    line = "Z\tn2\t" + f"bob\t17\t{len(FRAME)}\t{FRAME}" + "\t18\t2\t{}"
    assert line == wire.messages("n2", [("bob", 17, FRAME), (None, 18, "{}")])


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
