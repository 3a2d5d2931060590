"""History and recovery: offsets from 1, replay after ``since``, honest ``recovered``."""

from __future__ import annotations

import httpx


async def publish_n(client, room, n):
    return [(await client.request("publish", room=room, data=i))["offset"] for i in range(n)]


async def test_join_since_replays_exactly_what_was_missed(hub, ws_client):
    writer = await ws_client(hub.ws, "writer")
    await writer.request("join", room="r")
    assert await publish_n(writer, "r", 5) == [1, 2, 3, 4, 5]
    reader = await ws_client(hub.ws, "reader")
    joined = await reader.request("join", room="r", since=2)
    assert joined["recovered"] is True and joined["offset"] == 5
    replay = [await reader.expect("message") for _ in range(3)]
    assert [m["offset"] for m in replay] == [3, 4, 5]
    assert [m["data"] for m in replay] == [2, 3, 4]
    # Live messages follow the replay, in order.
    await writer.request("publish", room="r", data="live")
    assert (await reader.expect("message"))["offset"] == 6


async def test_since_zero_is_the_whole_history(hub, ws_client):
    writer = await ws_client(hub.ws)
    await writer.request("join", room="r")
    await publish_n(writer, "r", 3)
    reader = await ws_client(hub.ws)
    joined = await reader.request("join", room="r", since=0)
    assert joined["recovered"] is True
    assert [(await reader.expect("message"))["offset"] for _ in range(3)] == [1, 2, 3]


async def test_join_without_since_replays_nothing(hub, ws_client):
    writer = await ws_client(hub.ws)
    await writer.request("join", room="r")
    await publish_n(writer, "r", 3)
    reader = await ws_client(hub.ws)
    joined = await reader.request("join", room="r")
    assert "recovered" not in joined and joined["offset"] == 3
    await reader.no_frame()


async def test_trimmed_history_says_recovered_false(hub_server, ws_client):
    running = await hub_server(history={"size": 3})
    writer = await ws_client(running.ws)
    await writer.request("join", room="r")
    await publish_n(writer, "r", 10)
    reader = await ws_client(running.ws)
    joined = await reader.request("join", room="r", since=2)
    assert joined["recovered"] is False and joined["first_offset"] == 8
    assert [(await reader.expect("message"))["offset"] for _ in range(3)] == [8, 9, 10]
    # Asking from within what is kept is complete again.
    other = await ws_client(running.ws)
    assert (await other.request("join", room="r", since=7))["recovered"] is True


async def test_since_beyond_the_offset_is_not_recovered(hub, ws_client):
    writer = await ws_client(hub.ws)
    await writer.request("join", room="r")
    await publish_n(writer, "r", 2)
    reader = await ws_client(hub.ws)
    joined = await reader.request("join", room="r", since=99)  # from a previous hub life
    assert joined["recovered"] is False
    await reader.no_frame()


async def test_reconnect_recovers_what_was_missed(hub, ws_client):
    writer = await ws_client(hub.ws, "writer")
    await writer.request("join", room="r")
    reader = await ws_client(hub.ws, "reader")
    await reader.request("join", room="r")
    await writer.request("publish", room="r", data="seen")
    last = (await reader.expect("message"))["offset"]
    await reader.close()
    await publish_n(writer, "r", 4)
    again = await ws_client(hub.ws, "reader")
    joined = await again.request("join", room="r", since=last)
    assert joined["recovered"] is True
    assert [(await again.expect("message"))["data"] for _ in range(4)] == [0, 1, 2, 3]


async def test_per_room_history_size_from_pattern(hub_server, ws_client):
    running = await hub_server(rooms=[{"pattern": "tick:*", "history_size": 0}])
    writer = await ws_client(running.ws)
    await writer.request("join", room="tick:a")
    await writer.request("join", room="chat")
    await publish_n(writer, "tick:a", 3)
    await publish_n(writer, "chat", 3)
    reader = await ws_client(running.ws)
    assert (await reader.request("join", room="tick:a", since=0))["recovered"] is False
    assert (await reader.request("join", room="chat", since=0))["recovered"] is True


async def test_http_history(hub, ws_client):
    writer = await ws_client(hub.ws, "w")
    await writer.request("join", room="r")
    await publish_n(writer, "r", 4)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        page = (await http.get("/api/rooms/r/history", params={"since": 2})).json()
        missing = await http.get("/api/rooms/none/history")
    assert page["recovered"] is True and page["offset"] == 4
    assert [(m["offset"], m["data"], m["from"]) for m in page["messages"]] == [
        (3, 2, "w"),
        (4, 3, "w"),
    ]
    assert missing.status_code == 404
    assert missing.json()["detail"]["code"] == "not_found"
