from __future__ import annotations

import orjson
import pytest

from wirehub.core.protocol import decode, encode, error_frame, opt_int, req_room
from wirehub.errors import BadRequest, NotFound, TooLarge


def test_decode_accepts_an_object_with_a_type():
    assert decode('{"type":"ping","ref":7}', max_size=100) == {"type": "ping", "ref": 7}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{nope", "invalid JSON"),
        ("[1, 2]", "a frame must be a JSON object, got list"),
        ('"text"', "a frame must be a JSON object, got str"),
        ("{}", "missing field 'type' (a non-empty string)"),
        ('{"type": 3}', "missing field 'type' (a non-empty string)"),
        ('{"type": "ping", "ref": true}', "field 'ref' must be a string or an integer"),
        ('{"type": "ping", "ref": [1]}', "field 'ref' must be a string or an integer"),
    ],
)
def test_decode_rejects_malformed_frames_with_the_reason(payload, message):
    with pytest.raises(BadRequest) as info:
        decode(payload, max_size=1000)
    assert str(info.value).startswith(message)
    assert info.value.code == "bad_request"


def test_decode_counts_utf8_bytes_not_characters():
    payload = '{"type":"x","d":"' + "é" * 45 + '"}'  # 64 chars, 109 bytes
    assert len(payload) < 100 < len(payload.encode())
    with pytest.raises(TooLarge, match="exceeds the limit of 100"):
        decode(payload, max_size=100)


def test_field_helpers_name_the_field():
    with pytest.raises(BadRequest, match="field 'since' must be an integer >= 0"):
        opt_int({"since": -1}, "since")
    with pytest.raises(BadRequest, match="field 'since' must be an integer >= 0"):
        opt_int({"since": True}, "since")
    with pytest.raises(BadRequest, match="missing field 'room'"):
        req_room({}, "room")
    with pytest.raises(BadRequest, match="not a valid room name"):
        req_room({"room": "has space"}, "room")


def test_error_frame_echoes_ref_and_carries_code():
    frame = orjson.loads(error_frame(NotFound("client 'x' is not connected", to="x"), ref="r1"))
    assert frame == {
        "type": "error",
        "ref": "r1",
        "code": "not_found",
        "message": "client 'x' is not connected",
        "to": "x",
    }


def test_encode_is_compact_json():
    assert encode({"type": "pong"}) == '{"type":"pong"}'
