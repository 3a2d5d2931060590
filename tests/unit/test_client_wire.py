"""The client's connect URL and the split of batched text frames, without a socket."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from wirehub.client.wire import connect_url, split_frames


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def test_connect_url_sets_the_clients_parameters_once_and_keeps_the_others():
    url = connect_url("ws://h/ws?app=x&token=old&batch=0", "alice", "new", batch=True)
    assert query(url) == [("app", "x"), ("client_id", "alice"), ("token", "new"), ("batch", "1")]
    # Off means absent (not batch=0): a server reads any value but 1/true as off anyway.
    assert query(connect_url("ws://h/ws?batch=1", None, None)) == []
    assert connect_url("ws://h/ws", "bob", None).endswith("/ws?client_id=bob")


def test_a_batched_frame_splits_into_its_messages_in_order():
    frames = [{"type": "message", "offset": i, "data": "line\nbreak"} for i in range(1, 17)]
    raw = "\n".join(orjson.dumps(f).decode() for f in frames)
    assert "\n" in raw and raw.count("\n") == 15  # the LF inside data is escaped
    assert split_frames(raw, batched=True) == frames
    assert split_frames(orjson.dumps(frames[0]).decode(), batched=True) == [frames[0]]


def test_without_batch_a_frame_is_one_message_even_with_an_lf_between_tokens():
    # Plain JSON may hold whitespace LFs; only a batch connection splits on them.
    assert split_frames('{"type":\n"pong"}') == [{"type": "pong"}]


def test_a_bad_piece_is_dropped_with_a_warning_and_the_rest_delivered(caplog):
    raw = '{"type":"a"}\nnot json\n[1,2]\n\n{"type":"b"}\n'
    with caplog.at_level(logging.WARNING, "wirehub.client"):
        assert split_frames(raw, batched=True) == [{"type": "a"}, {"type": "b"}]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "dropped message 2 of a text frame",
        "dropped message 3 of a text frame",
    ]
    assert "a JSON list, not an object" in caplog.records[1].getMessage()


@pytest.mark.parametrize("raw", ["", "null", "garbage"])
def test_a_frame_with_nothing_usable_gives_no_message(raw):
    assert split_frames(raw) == []
