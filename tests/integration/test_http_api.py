"""The REST API and health endpoints against a live hub."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
async def http(hub):
    async with httpx.AsyncClient(base_url=hub.http) as client:
        yield client


async def test_publish_over_http_reaches_members_with_its_offset(hub, http, ws_client):
    member = await ws_client(hub.ws, "m")
    await member.request("join", room="alerts")
    response = await http.post("/api/rooms/alerts/publish", json={"data": {"level": "high"}})
    assert response.status_code == 200
    assert response.json() == {"room": "alerts", "offset": 1}
    msg = await member.expect("message", room="alerts", offset=1)
    assert msg["data"] == {"level": "high"} and msg["from"] == "$hub"


async def test_publish_body_must_carry_data(http):
    response = await http.post("/api/rooms/r/publish", json={"nodata": 1})
    assert response.status_code == 422
    response = await http.post(
        "/api/rooms/r/publish", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    response = await http.post("/api/rooms/bad%20room/publish", json={"data": 1})
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "bad_request"


async def test_room_listing_and_detail(hub, http, ws_client):
    a = await ws_client(hub.ws, "a")
    b = await ws_client(hub.ws, "b")
    await a.request("join", room="team:1")
    await b.request("join", room="team:1")
    await http.post("/api/rooms/team:1/publish", json={"data": 1})
    rooms = {r["name"]: r for r in (await http.get("/api/rooms")).json()}
    assert rooms["team:1"] == {"name": "team:1", "offset": 1, "member_count": 2, "messages": 1}
    detail = (await http.get("/api/rooms/team:1")).json()
    assert (
        detail["members"] == ["a", "b"]
        and detail["offset"] == 1
        and detail["presence_events"] is True
    )
    missing = await http.get("/api/rooms/ghost")
    assert missing.status_code == 404
    assert missing.json()["detail"] == {
        "code": "not_found",
        "message": "room 'ghost' does not exist",
        "room": "ghost",
    }


async def test_clients_list_send_and_disconnect(hub, http, ws_client):
    alice = await ws_client(hub.ws, "alice")
    watcher = await ws_client(hub.ws, "watcher")
    await alice.request("join", room="r")
    await watcher.request("join", room="r")
    clients = {c["id"]: c for c in (await http.get("/api/clients")).json()}
    assert set(clients) == {"alice", "watcher"}
    assert clients["alice"]["rooms"] == ["r"] and clients["alice"]["kind"] == "ws"
    assert clients["alice"]["node"] == hub.hub.node_id
    sent = await http.post("/api/clients/alice/send", json={"data": "psst"})
    assert sent.status_code == 202
    direct = await alice.wait_for("direct")
    assert direct == {"type": "direct", "from": "$hub", "data": "psst"}

    assert (await http.post("/api/clients/nobody/send", json={"data": 1})).status_code == 404
    kicked = await http.delete("/api/clients/alice")
    assert kicked.status_code == 204
    code, reason = await alice.closed()
    assert code == 4003 and reason == "disconnected by the server"
    await watcher.wait_for("presence", event="leave", client_id="alice")
    assert (await http.delete("/api/clients/alice")).status_code == 404
    assert (await http.get("/api/clients/alice")).status_code == 404


async def test_broadcast_reaches_every_connection(hub, http, ws_client):
    clients = [await ws_client(hub.ws) for _ in range(3)]
    response = await http.post("/api/broadcast", json={"data": "all hands"})
    assert response.json() == {"delivered": 3}
    for client in clients:
        assert (await client.expect("broadcast"))["data"] == "all hands"


async def test_health_ready_and_metrics(hub, http, ws_client):
    assert (await http.get("/healthz")).json()["status"] == "ok"
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    client = await ws_client(hub.ws)
    await client.send_raw("garbage")
    await client.expect("error")
    await client.request("join", room="m")
    await client.request("publish", room="m", data=1)
    text = (await http.get("/metrics")).text
    assert 'wirehub_connections{kind="ws"} 1.0' in text
    assert 'wirehub_errors_total{code="bad_request"} 1.0' in text
    assert "wirehub_messages_published_total 1.0" in text
    assert "wirehub_fanout_seconds_count 1.0" in text
    assert "wirehub_frames_in_total 3.0" in text
    await hub.hub.stop()
    not_ready = await http.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["hub"] is False


async def test_openapi_lists_the_api(http):
    paths = (await http.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/rooms",
        "/api/rooms/{room}/publish",
        "/api/clients/{client_id}/send",
        "/readyz",
    ):
        assert path in paths


async def test_stats_room_streams_snapshots(hub_server, ws_client):
    running = await hub_server(stats_interval=0.1)
    client = await ws_client(running.ws, "dash")
    await client.request("join", room="$hub.stats")
    snapshot = (await client.wait_for("message", room="$hub.stats"))["data"]
    assert snapshot["connections"] == 1 and snapshot["node"] == running.hub.node_id
    assert snapshot["rss_bytes"] > 0 and "deliveries_per_s" in snapshot


async def test_clients_room_announces_connects_and_disconnects(hub, ws_client):
    dash = await ws_client(hub.ws, "dash")
    await dash.request("join", room="$hub.clients")
    other = await ws_client(hub.ws, "visitor")
    event = (await dash.expect("message", room="$hub.clients"))["data"]
    assert event["event"] == "connect" and event["client_id"] == "visitor" and event["kind"] == "ws"
    await other.close()
    event = (await dash.expect("message", room="$hub.clients"))["data"]
    assert event["event"] == "disconnect" and event["client_id"] == "visitor"
