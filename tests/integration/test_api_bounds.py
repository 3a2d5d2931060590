"""Listings over HTTP and WebSocket are bounded: a page, never the whole table.

``GET /api/rooms`` on a node with 100 000 rooms used to build 100 000 models
per request (the dashboard asks on every stats tick); a room's detail and the
``presence`` frame listed every member. Now each returns at most a page.
"""

from __future__ import annotations

import httpx

from memory_transport import MemoryTransport
from wirehub.core.connection import Connection
from wirehub.core.node import MAX_MEMBERS_LISTED
from wirehub.web.api import MAX_PAGE


async def test_room_listing_is_paged(hub_server):
    running = await hub_server()
    for i in range(MAX_PAGE + 5):
        running.hub.node.publish(f"r{i}", "$hub", i)
    async with httpx.AsyncClient(base_url=running.http) as http:
        first = await http.get("/api/rooms")
        assert first.status_code == 200 and len(first.json()) == MAX_PAGE
        assert first.headers["x-total-count"] == str(MAX_PAGE + 5)
        rest = (await http.get("/api/rooms", params={"offset": MAX_PAGE})).json()
        assert [r["name"] for r in rest] == [f"r{i}" for i in range(MAX_PAGE, MAX_PAGE + 5)]
        small = (await http.get("/api/rooms", params={"limit": 2, "offset": 1})).json()
        assert small == [
            {"name": "r1", "offset": 1, "member_count": 0, "messages": 1},
            {"name": "r2", "offset": 1, "member_count": 0, "messages": 1},
        ]
        too_big = await http.get("/api/rooms", params={"limit": MAX_PAGE + 1})
        assert too_big.status_code == 422


async def test_big_room_detail_and_presence_list_a_bounded_page(hub_server, ws_client):
    running = await hub_server()
    node = running.hub.node
    watcher = await ws_client(running.ws, "watcher")
    await watcher.request("join", room="big")
    for i in range(MAX_MEMBERS_LISTED + 500):
        node.rooms.join(Connection(f"p{i:05d}", MemoryTransport()), "big")
    total = MAX_MEMBERS_LISTED + 501
    presence = await watcher.request("presence", room="big")
    assert presence["member_count"] == total and len(presence["members"]) == MAX_MEMBERS_LISTED
    async with httpx.AsyncClient(base_url=running.http) as http:
        detail = (await http.get("/api/rooms/big")).json()
    assert detail["member_count"] == total
    assert len(detail["members"]) == MAX_MEMBERS_LISTED == len(detail["member_nodes"])
    assert detail["members"] == sorted(detail["members"]) and "watcher" in detail["members"]


async def test_client_listing_is_paged_and_one_client_is_found_directly(hub_server, ws_client):
    running = await hub_server()
    for name in ("a", "b", "c"):
        await (await ws_client(running.ws, name)).request("join", room=f"room-{name}")
    async with httpx.AsyncClient(base_url=running.http) as http:
        page = await http.get("/api/clients", params={"limit": 2})
        assert [c["id"] for c in page.json()] == ["a", "b"]
        assert page.headers["x-total-count"] == "3"
        rest = (await http.get("/api/clients", params={"limit": 2, "offset": 2})).json()
        assert [(c["id"], c["rooms"], c["kind"]) for c in rest] == [("c", ["room-c"], "ws")]
        one = (await http.get("/api/clients/b")).json()
        assert one["id"] == "b" and one["rooms"] == ["room-b"] and one["queued"] == 0
        assert (await http.get("/api/clients/nobody")).status_code == 404
