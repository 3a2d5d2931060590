from __future__ import annotations

import orjson
import pytest

from wirehub.core.protocol import (
    decode,
    encode,
    error_frame,
    opt_bool,
    opt_int,
    req_room,
    req_str,
)
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
        ('{"type": null}', "field 'type' must be a non-empty string, got null"),
        ('{"type": 5}', "field 'type' must be a non-empty string, got integer"),
        ('{"type": ""}', "field 'type' must be a non-empty string, got an empty string"),
        (
            '{"type": "ping", "ref": true}',
            "field 'ref' must be a string or an integer, got boolean",
        ),
        ('{"type": "ping", "ref": [1]}', "field 'ref' must be a string or an integer, got array"),
        (
            '{"type": "publish", "room": "r", "data": 1, "echo": "yes"}',
            "field 'echo' must be true or false, got string",
        ),
        (
            '{"type": "publish", "room": "r", "data": 1, "echo": 1}',
            "field 'echo' must be true or false, got integer",
        ),
    ],
)
def test_decode_rejects_malformed_frames_with_the_reason(payload, message):
    with pytest.raises(BadRequest) as info:
        decode(payload, max_size=1000)
    assert str(info.value).startswith(message)
    assert info.value.code == "bad_request"


def test_decode_names_the_bad_field_in_the_error_fields():
    with pytest.raises(BadRequest) as info:
        decode('{"type": "publish", "room": "r", "data": 1, "echo": "yes"}', max_size=1000)
    assert info.value.to_wire() == {
        "code": "bad_request",
        "message": "field 'echo' must be true or false, got string",
        "field": "echo",
    }


def test_an_ill_typed_field_error_still_echoes_the_ref():
    with pytest.raises(BadRequest) as info:
        decode('{"type": "publish", "room": "r", "data": 1, "echo": 1, "ref": 9}', max_size=1000)
    frame = orjson.loads(error_frame(info.value))
    assert frame["ref"] == 9 and frame["field"] == "echo"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"room": 5}, "field 'room' must be a non-empty string, got integer"),
        ({"room": None}, "missing field 'room' (a non-empty string)"),
        ({"room": ["r"]}, "field 'room' must be a non-empty string, got array"),
        ({"room": "r", "since": "3"}, "field 'since' must be an integer >= 0, got string"),
        ({"room": "r", "since": 1.5}, "field 'since' must be an integer >= 0, got number"),
    ],
)
def test_join_fields_say_which_type_they_got(frame, message):
    with pytest.raises(BadRequest) as info:
        req_room(frame)
        opt_int(frame, "since")
    assert str(info.value) == message
    assert info.value.fields == {"field": message.split("'")[1]}


def test_decode_lets_optional_nulls_and_unknown_types_through():
    # null means absent for optional fields; a custom type's fields are its handler's business.
    frame = '{"type": "publish", "room": "r", "data": 1, "echo": null}'
    assert decode(frame, max_size=1000)["echo"] is None
    frame = '{"type": "publish", "room": "r", "data": 1, "echo": true}'
    assert decode(frame, max_size=1000)["echo"] is True
    assert decode('{"type": "chat.typing", "room": 5}', max_size=1000)["room"] == 5


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
    with pytest.raises(BadRequest, match="field 'since' must be an integer >= 0, got -1"):
        opt_int({"since": -1}, "since")
    with pytest.raises(BadRequest, match="missing field 'room'"):
        req_room({}, "room")
    with pytest.raises(BadRequest, match="field 'room' must be a non-empty string, got integer"):
        req_room({"room": 5}, "room")
    with pytest.raises(BadRequest, match="field 'to' must be a non-empty string, got an empty"):
        req_str({"to": ""}, "to")
    assert opt_bool({}, "echo") is False and opt_bool({"echo": True}, "echo") is True
    with pytest.raises(BadRequest, match="field 'echo' must be true or false, got string"):
        opt_bool({"echo": "yes"}, "echo")
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
