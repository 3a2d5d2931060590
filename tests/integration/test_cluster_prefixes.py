"""Two hubs with different ``[redis] prefix`` on one redis-server are two separate hubs.

Jobs are covered in test_jobs_celery.py; here: rooms, messages, history, presence,
direct messages and the client lists never cross from one prefix to the other.
"""

from __future__ import annotations

import uuid

import httpx

from cluster_support import start_node, stop_node
from support import FACTOR


async def test_rooms_clients_and_messages_stay_within_their_prefix(redis_server, ws_client):
    one = start_node(redis_server, f"p1{uuid.uuid4().hex[:6]}")
    two = start_node(redis_server, f"p2{uuid.uuid4().hex[:6]}")
    try:
        alice = await ws_client(one.ws, "alice-prefix")
        bob = await ws_client(two.ws, "bob-prefix")
        joined = await alice.request("join", room="shared")
        assert joined["members"] == ["alice-prefix"]
        # The same room name under the other prefix is another room: no members, no offsets.
        joined = await bob.request("join", room="shared", since=0)
        assert joined["members"] == ["bob-prefix"] and joined["offset"] == 0
        ack = await alice.request("publish", room="shared", data="one only", echo=True)
        assert ack["offset"] == 1
        await alice.expect("message", data="one only")
        ack = await bob.request("publish", room="shared", data="two only", echo=True)
        assert ack["offset"] == 1  # its own sequence, not the other hub's
        await bob.expect("message", data="two only")
        await bob.no_frame()  # nothing of hub one's arrives
        # Direct messages do not cross either.
        err = await alice.request("direct", to="bob-prefix", data="psst")
        assert err["type"] == "error" and err["code"] == "not_found"
        async with httpx.AsyncClient(timeout=5 * FACTOR) as http:
            clients_one = {c["id"] for c in (await http.get(f"{one.http}/api/clients")).json()}
            clients_two = {c["id"] for c in (await http.get(f"{two.http}/api/clients")).json()}
            assert "bob-prefix" not in clients_one and "alice-prefix" in clients_one
            assert "alice-prefix" not in clients_two and "bob-prefix" in clients_two
            history = (await http.get(f"{one.http}/api/rooms/shared/history")).json()
            assert [m["data"] for m in history["messages"]] == ["one only"]
            room = (await http.get(f"{two.http}/api/rooms/shared")).json()
            assert room["member_count"] == 1
    finally:
        stop_node(one)
        stop_node(two)
