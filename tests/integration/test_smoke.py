from __future__ import annotations

import httpx


async def test_two_clients_chat_in_a_room(hub, ws_client):
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    joined = await alice.request("join", room="lobby")
    assert joined["members"] == ["alice"]
    await bob.request("join", room="lobby")
    await alice.expect("presence", room="lobby", event="join", client_id="bob")
    ack = await bob.request("publish", room="lobby", data={"text": "hi"})
    assert ack["type"] == "ack" and ack["offset"] == 1
    msg = await alice.expect("message", room="lobby", offset=1)
    assert msg["from"] == "bob" and msg["data"] == {"text": "hi"}
    async with httpx.AsyncClient(base_url=hub.http) as http:
        rooms = (await http.get("/api/rooms")).json()
    assert rooms == [{"name": "lobby", "offset": 1, "member_count": 2, "messages": 1}]
