"""Typed handlers and typed rooms against a live hub: real sockets, real HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from support import unused_port
from typed_models import Order, Typing, TypingAck
from wirehub.errors import BadRequest
from wirehub.settings import load_settings


@pytest.fixture
async def http(hub):
    async with httpx.AsyncClient(base_url=hub.http) as client:
        yield client


# -- typed handlers ------------------------------------------------------------------


async def test_a_typed_handler_gets_the_model_and_bad_frames_name_each_field(hub, ws_client):
    got: list[Typing] = []

    @hub.hub.on("chat.typing", model=Typing, reply_model=TypingAck)
    async def typing(conn, msg: Typing):
        """Tell the room someone types."""
        got.append(msg)
        return {"room": msg.room, "chars": len(msg.text)}

    client = await ws_client(hub.ws, "alice")
    reply = await client.request("chat.typing", room="lobby", text="hello")
    assert reply == {"type": "chat.typing.ok", "room": "lobby", "chars": 5, "ref": reply["ref"]}
    assert got == [Typing(room="lobby", text="hello")]

    await client.send(type="chat.typing", ref=7, room="", extra=1)
    error = await client.expect("error", ref=7)
    assert error == {
        "type": "error",
        "ref": 7,
        "code": "bad_request",
        "message": "invalid chat.typing (Typing): room: String should have at least 1 "
        "character; text: Field required",
        "errors": [
            {"field": "room", "message": "String should have at least 1 character"},
            {"field": "text", "message": "Field required"},
        ],
    }
    assert len(got) == 1  # the handler never ran
    # The connection goes on.
    assert (await client.request("ping"))["type"] == "pong"
    assert (await client.request("chat.typing", room="r", text="x"))["chars"] == 1
    entry = hub.hub.schemas.handlers["chat.typing"]
    assert (entry.model, entry.reply_model, entry.summary) == (
        Typing,
        TypingAck,
        "Tell the room someone types.",
    )


async def test_an_untyped_handler_still_gets_the_frame(hub, ws_client):
    @hub.hub.on("sum")
    def add(conn, frame):
        return {"type": "sum.result", "value": sum(frame["values"]), "keys": sorted(frame)}

    client = await ws_client(hub.ws)
    reply = await client.request("sum", values=[1, 2])
    assert reply["value"] == 3 and reply["keys"] == ["ref", "type", "values"]
    assert hub.hub.schemas.handlers["sum"].model is None


# -- typed rooms ---------------------------------------------------------------------


async def test_ws_publish_into_a_typed_room_is_validated_before_anyone_gets_it(hub, ws_client):
    hub.hub.room("orders:*", model=Order)
    sender = await ws_client(hub.ws, "sender")
    member = await ws_client(hub.ws, "member")
    for client in (sender, member):
        await client.request("join", room="orders:eu")
        await client.request("join", room="chat")
    await sender.expect("presence", event="join", client_id="member")
    await sender.expect("presence", event="join", client_id="member")

    bad = await sender.request("publish", room="orders:eu", data={"id": "x", "total": -2})
    assert bad["code"] == "bad_request" and bad["room"] == "orders:eu"
    assert bad["errors"] == [
        {
            "field": "data.id",
            "message": "Input should be a valid integer, unable to parse string as an integer",
        },
        {"field": "data.total", "message": "Input should be greater than or equal to 0"},
    ]
    ack = await sender.request("publish", room="orders:eu", data={"id": "5", "total": 9})
    assert ack["type"] == "ack" and ack["offset"] == 1
    # The bad publish delivered nothing: the next frame is the good one, as validated.
    message = await member.expect("message", room="orders:eu", offset=1)
    assert message["data"] == {"id": 5, "total": 9.0, "currency": "EUR"}
    # Other rooms are not typed.
    await sender.request("publish", room="chat", data="anything")
    await member.expect("message", room="chat", data="anything")


async def test_http_publish_into_a_typed_room_answers_422_with_the_fields(hub, http, ws_client):
    hub.hub.room("orders:*", model=Order)
    member = await ws_client(hub.ws, "member")
    await member.request("join", room="orders:1")
    response = await http.post("/api/rooms/orders:1/publish", json={"data": {"total": 1}})
    assert response.status_code == 422
    assert response.json() == {
        "detail": {
            "code": "bad_request",
            "message": "invalid data for room 'orders:1' (Order): data.id: Field required",
            "errors": [{"field": "data.id", "message": "Field required"}],
            "room": "orders:1",
        }
    }
    response = await http.post("/api/rooms/orders:1/publish", json={"data": {"id": 1, "total": 2}})
    assert response.status_code == 200 and response.json() == {"room": "orders:1", "offset": 1}
    message = await member.expect("message", room="orders:1", offset=1)
    assert message["data"] == {"id": 1, "total": 2.0, "currency": "EUR"}
    other = await http.post("/api/rooms/chat/publish", json={"data": [1]})
    assert other.status_code == 200


async def test_hub_publish_into_a_typed_room_raises_bad_request(hub, ws_client):
    hub.hub.room("orders:*", model=Order)
    member = await ws_client(hub.ws, "member")
    await member.request("join", room="orders:1")
    with pytest.raises(BadRequest) as caught:
        await hub.hub.publish("orders:1", {"id": 1, "total": "lots"})
    assert caught.value.code == "bad_request"
    assert caught.value.fields["errors"] == [
        {
            "field": "data.total",
            "message": "Input should be a valid number, unable to parse string as a number",
        }
    ]
    assert await hub.hub.publish("orders:1", {"id": 2, "total": 0, "currency": "USD"}) == 1
    message = await member.expect("message", room="orders:1", offset=1)
    assert message["data"] == {"id": 2, "total": 0.0, "currency": "USD"}


async def test_a_rooms_setting_names_its_model_by_import_string(hub_server, ws_client, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(
        '[[rooms]]\npattern = "orders:*"\nhistory_size = 10\nmodel = "typed_models:Order"\n'
    )
    settings = load_settings(config, stats_interval=0)
    running = await hub_server(settings)
    (typed,) = running.hub.schemas.rooms
    assert (typed.pattern, typed.model, typed.source) == ("orders:*", Order, "rooms[0].model")
    client = await ws_client(running.ws, "c")
    await client.request("join", room="orders:9")
    bad = await client.request("publish", room="orders:9", data={"id": 1})
    assert bad["errors"] == [{"field": "data.total", "message": "Field required"}]
    ack = await client.request("publish", room="orders:9", data={"id": 1, "total": 1}, echo=True)
    assert ack["offset"] == 1
    await client.expect("message", offset=1, data={"id": 1, "total": 1.0, "currency": "EUR"})


async def test_a_tcp_bridge_into_a_typed_room_reports_a_bad_frame_and_goes_on(
    hub_server, ws_client
):
    running = await hub_server(
        rooms=[{"pattern": "orders:*", "model": "typed_models:Order"}],
        bridges=[{"name": "o", "port": unused_port(), "room": "orders:tcp", "framing": "jsonl"}],
    )
    ws = await ws_client(running.ws, "watcher")
    await ws.request("join", room="orders:tcp")
    await ws.request("join", room="$bridges")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.hub.bridges["o"].port)
    try:
        await ws.wait_for("presence", room="orders:tcp", event="join")
        writer.write(b'{"id": 1}\n{"id": 2, "total": 5}\n')
        await writer.drain()
        error = await ws.expect("message", room="$bridges")
        assert error["data"]["code"] == "bad_request"
        assert "data.total: Field required" in error["data"]["message"]
        message = await ws.expect("message", room="orders:tcp")
        assert message["data"] == {"id": 2, "total": 5.0, "currency": "EUR"}
    finally:
        writer.close()
        await writer.wait_closed()
        del reader
