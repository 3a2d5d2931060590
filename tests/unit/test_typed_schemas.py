"""wirehub.typed without sockets: the room-model registry, validation errors, import strings."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from typed_models import Order, Typing, TypingAck
from wirehub.errors import BadRequest, ConfigError
from wirehub.hub import Hub
from wirehub.settings import Settings, load_settings
from wirehub.typed import MAX_FIELD_ERRORS, Schemas, import_model, typed_handler


class Note(BaseModel):
    text: str


class Many(BaseModel):
    values: list[int]


def test_no_typed_room_means_no_model_and_no_cache():
    schemas = Schemas()
    assert schemas.room_model("orders:1") is None
    assert not schemas.typed_rooms and schemas._cache == {}


def test_the_first_matching_pattern_wins_in_declaration_order():
    # As [[rooms]] policies: the settings' entries (file order), then hub.room calls.
    schemas = Schemas()
    schemas.add_room("orders:vip:*", Note, source="rooms[0].model")
    schemas.add_room("orders:*", Order, source="rooms[1].model")
    schemas.add_room("*", Typing)
    assert schemas.room_model("orders:vip:7") is Note
    assert schemas.room_model("orders:7") is Order
    assert schemas.room_model("chat") is Typing
    # fnmatchcase, as RoomPolicy.matches: case-sensitive.
    assert schemas.room_model("ORDERS:7") is Typing
    assert [r.pattern for r in schemas.rooms] == ["orders:vip:*", "orders:*", "*"]
    assert schemas.rooms[0].source == "rooms[0].model" and schemas.rooms[2].source == "hub.room"


def test_a_room_is_matched_once_then_cached_and_the_cache_is_bounded():
    schemas = Schemas(cache_size=2)
    schemas.add_room("orders:*", Order)
    assert schemas.room_model("orders:1") is Order
    schemas.rooms[0] = schemas.rooms[0].__class__("nothing", Note, None)  # bypass add_room
    assert schemas.room_model("orders:1") is Order  # cached: no new pattern scan
    assert schemas.room_model("chat") is None
    assert schemas.room_model("other") is None
    assert len(schemas._cache) == 2 and "orders:1" not in schemas._cache  # oldest dropped


def test_adding_a_room_resets_the_cache_and_a_pattern_is_typed_once():
    schemas = Schemas()
    assert schemas.room_model("x") is None
    schemas.add_room("orders:*", Order)
    assert schemas.room_model("orders:1") is Order
    schemas.add_room("x", Note)
    assert schemas.room_model("x") is Note
    with pytest.raises(
        ValueError, match=r"rooms 'x' already have the model Note \(from hub.room\)"
    ):
        schemas.add_room("x", Order)
    with pytest.raises(TypeError, match="must be a pydantic model class"):
        schemas.add_room("y", dict)  # type: ignore[arg-type]


def test_summaries_come_from_the_docstrings():
    schemas = Schemas()
    room = schemas.add_room("orders:*", Order)
    assert room.summary == "An order placed in an ``orders:*`` room."
    assert schemas.add_room("acks", TypingAck).summary is None  # not BaseModel's docstring

    def handler(conn, msg):
        """Tell the room someone types.

        More text.
        """

    entry = schemas.add_handler("chat.typing", handler, Typing, TypingAck)
    assert entry.summary == "Tell the room someone types."
    assert entry.reply_type == "chat.typing.ok"
    assert schemas.handlers["chat.typing"] is entry


def test_check_data_delivers_the_validated_dump_and_lists_every_bad_field():
    schemas = Schemas()
    schemas.add_room("orders:*", Order)
    assert schemas.check_data("orders:1", {"id": "7", "total": 3}) == {
        "id": 7,
        "total": 3.0,
        "currency": "EUR",
    }
    raw = {"anything": [1]}
    assert schemas.check_data("chat", raw) is raw  # untyped rooms: untouched
    with pytest.raises(BadRequest) as caught:
        schemas.check_data("orders:1", {"total": -1, "currency": "GBP"})
    error = caught.value
    assert error.code == "bad_request" and error.http_status == 422
    assert error.to_wire() == {
        "code": "bad_request",
        "message": "invalid data for room 'orders:1' (Order): data.id: Field required; "
        "data.total: Input should be greater than or equal to 0; "
        "data.currency: Input should be 'EUR' or 'USD'",
        "errors": [
            {"field": "data.id", "message": "Field required"},
            {"field": "data.total", "message": "Input should be greater than or equal to 0"},
            {"field": "data.currency", "message": "Input should be 'EUR' or 'USD'"},
        ],
        "room": "orders:1",
    }
    with pytest.raises(BadRequest) as caught:
        schemas.check_data("orders:1", "not an object")
    assert caught.value.fields["errors"][0]["field"] == "data"


def test_the_error_list_is_bounded():
    schemas = Schemas()
    schemas.add_room("m", Many)
    with pytest.raises(BadRequest) as caught:
        schemas.check_data("m", {"values": ["x"] * 1000})
    fields = caught.value.fields
    assert len(fields["errors"]) == MAX_FIELD_ERRORS and fields["errors_truncated"] is True
    assert fields["errors"][0] == {
        "field": "data.values.0",
        "message": "Input should be a valid integer, unable to parse string as an integer",
    }
    assert caught.value.message.endswith("(and 997 more)")


async def test_typed_handler_validates_calls_with_the_model_and_shapes_the_reply():
    schemas = Schemas()
    seen = []

    async def on_typing(conn, msg: Typing):
        seen.append(msg)
        return TypingAck(room=msg.room, chars=len(msg.text))

    entry = schemas.add_handler("chat.typing", on_typing, Typing, TypingAck)
    run = typed_handler(entry, on_typing)
    reply = await run(None, {"type": "chat.typing", "ref": 1, "room": "r", "text": "hey"})
    assert seen == [Typing(room="r", text="hey")]
    assert reply == {"type": "chat.typing.ok", "room": "r", "chars": 3}
    with pytest.raises(BadRequest) as caught:
        await run(None, {"type": "chat.typing", "room": ""})
    assert caught.value.fields["errors"] == [
        {"field": "room", "message": "String should have at least 1 character"},
        {"field": "text", "message": "Field required"},
    ]


def test_a_reply_model_checks_dict_replies_and_untyped_handlers_are_not_wrapped():
    schemas = Schemas()

    def bad_reply(conn, msg):
        return {"room": msg.room}

    run = typed_handler(schemas.add_handler("t", bad_reply, Typing, TypingAck), bad_reply)
    with pytest.raises(RuntimeError, match="reply of 't' does not match TypingAck"):
        run(None, {"room": "r", "text": ""})

    def plain(conn, frame):
        return {"type": "x"}

    assert typed_handler(schemas.add_handler("plain", plain), plain) is plain
    assert schemas.handlers["plain"].model is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("typed_models", "'typed_models' is not an import string 'package.module:Model'"),
        ("no_such_module_x:Order", "cannot import module 'no_such_module_x' of "),
        ("typed_models:Nope", "'typed_models:Nope': 'typed_models' has no attribute 'Nope'"),
        ("typed_models:NOT_A_MODEL", "'typed_models:NOT_A_MODEL' is not a pydantic model class"),
    ],
)
def test_import_model_says_what_is_wrong(spec, message):
    with pytest.raises(ValueError) as caught:
        import_model(spec)
    assert str(caught.value).startswith(message)


def test_import_model_resolves_a_class():
    assert import_model("typed_models:Order") is Order


def test_system_rooms_are_never_typed():
    schemas = Schemas()
    schemas.add_room("*", Order)
    assert schemas.room_model("$hub.stats") is None and schemas.room_model("x") is Order
    stats = {"node": "n"}
    assert schemas.check_data("$hub.stats", stats) is stats
    with pytest.raises(ValueError, match=r"system rooms \(\$\.\.\.\) carry the hub's events"):
        schemas.add_room("$jobs", Order)


def test_a_rooms_model_is_imported_when_the_settings_load(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[[rooms]]\npattern = "orders:*"\nmodel = "typed_models:Order"\n')
    settings = load_settings(config)
    assert settings.rooms[0].model == "typed_models:Order"
    hub = Hub(settings)
    assert [(r.pattern, r.model, r.source) for r in hub.schemas.rooms] == [
        ("orders:*", Order, "rooms[0].model")
    ]
    assert hub.node.check_data is not None
    assert Hub(Settings()).node.check_data is None  # no typed room: no check per publish


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("typed_models:Nope", "'typed_models:Nope': 'typed_models' has no attribute 'Nope'"),
        ("typed_models:NOT_A_MODEL", "'typed_models:NOT_A_MODEL' is not a pydantic model class"),
        ("nowhere_at_all:Order", "cannot import module 'nowhere_at_all' of"),
    ],
)
def test_a_rooms_model_that_cannot_be_used_fails_the_load_naming_the_setting(
    tmp_path, spec, reason
):
    config = tmp_path / "hub.toml"
    config.write_text(f'[[rooms]]\npattern = "a"\n[[rooms]]\npattern = "b"\nmodel = "{spec}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    first, line = str(caught.value).splitlines()
    assert first == f"invalid configuration in {config}:"
    assert line.startswith(f"  rooms.1.model: {reason}"), line
