"""deploy/nginx.conf, run by a real nginx in front of two real hubs sharing a real Redis.

What a deployment behind the shipped proxy config relies on: the WebSocket upgrade goes
through, ``least_conn`` spreads long-lived connections over both nodes, ``/api``, the health
URLs and the hub's redirects go through, the hubs see each client's own address (so per-IP
limits count clients, not the proxy), an idle client is kept open by the hub's heartbeat
rather than cut by the proxy's read timeout, and a client whose node is killed comes back
through nginx on the other node and recovers every message published meanwhile. The
docker-compose.yml that runs this topology in containers is checked against the same file.

The proxy config is the shipped file with addresses and ports substituted
(tests/nginx_support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import yaml  # PyYAML comes with the test extra (schemathesis)

from cluster_support import start_nodes, stop_node
from nginx_support import (
    DEPLOY_CONF,
    Nginx,
    location_directives,
    parse_duration,
    start_nginx,
)
from support import FACTOR, TIMEOUT, WSClient, open_client
from wirehub.settings import HeartbeatSettings, load_settings

ROOT = DEPLOY_CONF.parent.parent
COMPOSE = ROOT / "docker-compose.yml"

#: The shortened proxy_read_timeout of the heartbeat test, in seconds.
READ_TIMEOUT = 1.5 * FACTOR


@contextlib.contextmanager
def proxy(root: Path, upstreams: Sequence[int], **kwargs: float) -> Iterator[Nginx]:
    nginx = start_nginx(root, upstreams, **kwargs)
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[WSClient]]:
    """Clients a test opened; closed at teardown whatever state they are in."""
    opened: list[WSClient] = []
    yield opened
    for client in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), TIMEOUT)


def room_name() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


def test_shipped_timeouts_leave_the_hub_to_decide_a_client_is_dead():
    """nginx must never cut a socket the hub still considers alive.

    Toward an idle client the hub sends a ``ping`` after ``heartbeat.interval`` of silence
    and closes it (4002) ``heartbeat.timeout`` later if nothing comes back, so the longest
    the hub stays silent on a live socket is under ``interval + timeout``.
    """
    ws = location_directives(DEPLOY_CONF.read_text(), "/ws")
    hb = HeartbeatSettings()
    assert ws["proxy_http_version"] == "1.1"
    assert parse_duration(ws["proxy_read_timeout"]) > hb.interval + hb.timeout, ws
    assert parse_duration(ws["proxy_send_timeout"]) > hb.interval + hb.timeout, ws


def test_compose_runs_the_topology_this_file_tests(monkeypatch):
    """docker-compose.yml cannot be run here (no Docker engine): check it agrees with the
    proxy config tested below and is a configuration the hub accepts."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    conf = DEPLOY_CONF.read_text()
    # nginx mounts the tested file and listens where the compose port mapping points.
    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert [p.split(":")[-1] for p in nginx["ports"]] == ["80"] and "listen 80;" in conf
    # Every upstream is a hub service on the port that hub serves, and the proxy waits for it.
    upstreams = re.findall(r"\bserver\s+(\w+):(\d+)", conf)
    assert upstreams and set(nginx["depends_on"]) == {host for host, _ in upstreams}
    for host, port in upstreams:
        env = services[host]["environment"]
        assert env["WIREHUB_SERVER__PORT"] == port and env["WIREHUB_SERVER__HOST"] == "0.0.0.0"
        assert "8000" not in str(services[host].get("ports", "")), "hubs are reached via nginx"
        # nginx is not 127.0.0.1 there: without this, per-IP limits would count the proxy.
        assert env.get("FORWARDED_ALLOW_IPS"), "hubs must trust nginx's X-Forwarded-For"
    # The hubs' environment is a valid configuration, in the distributed mode, for Celery.
    hub = services[upstreams[0][0]]
    for key in [k for k in os.environ if k.startswith("WIREHUB_")]:
        monkeypatch.delenv(key)
    for key, value in hub["environment"].items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    assert settings.redis_url == "redis://redis:6379/0" and settings.jobs.runner == "celery"
    for module in settings.jobs.modules:  # the image copies examples/ to /app (PYTHONPATH)
        assert ROOT.joinpath(*module.split(".")).with_suffix(".py").exists(), module
    # docker stops a container this long after SIGTERM: the hub's own shutdown fits in it.
    budget = settings.shutdown.drain_timeout + settings.server.graceful_timeout
    assert parse_duration(hub["stop_grace_period"]) > budget
    assert services["worker"]["command"] == ["wirehub", "worker"]


async def test_websocket_api_and_client_addresses_through_nginx(
    hub_server, redis_url, tmp_path, clients
):
    prefix = f"ng{uuid.uuid4().hex[:6]}"
    a = await hub_server(redis={"url": redis_url, "prefix": prefix})
    b = await hub_server(redis={"url": redis_url, "prefix": prefix})
    room = room_name()
    with proxy(tmp_path / "nginx", [a.port, b.port]) as nginx:
        # Two clients from two addresses of the loopback range (nginx itself is 127.0.0.1).
        alice = await open_client(nginx.ws, "alice-ng", local_addr=("127.0.0.2", 0))
        clients.append(alice)
        bob = await open_client(nginx.ws, "bob-ng", local_addr=("127.0.0.3", 0))
        clients.append(bob)
        # least_conn: the second open connection goes to the node that has none.
        assert alice.welcome["node"] != bob.welcome["node"]
        assert {alice.welcome["node"], bob.welcome["node"]} == {a.hub.node_id, b.hub.node_id}

        await alice.request("join", room=room)
        await bob.request("join", room=room)
        await alice.wait_for("presence", event="join", client_id="bob-ng")
        ack = await alice.request("publish", room=room, data="over the proxy")
        message = await bob.wait_for("message", room=room)
        assert (message["offset"], message["data"], message["from"]) == (
            ack["offset"],
            "over the proxy",
            "alice-ng",
        )

        async with httpx.AsyncClient(base_url=nginx.http, timeout=TIMEOUT) as http:
            for path in ("/healthz", "/readyz"):
                reply = await http.get(path)
                assert reply.status_code == 200, (path, reply.text)
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            # The hub's own redirects (trailing slash) point back at the proxy, port included.
            moved = await http.get("/docs/")
            assert moved.status_code == 307, moved.text
            assert moved.headers["location"] == f"{nginx.http}/docs", moved.headers
            published = await http.post(f"/api/rooms/{room}/publish", json={"data": {"via": "api"}})
            assert published.status_code == 200, published.text
            offset = published.json()["offset"]
            assert offset == ack["offset"] + 1
            for member in (alice, bob):
                got = await member.wait_for("message", room=room, offset=offset)
                assert got["data"] == {"via": "api"}
            # The hubs trust X-Forwarded-For from the proxy: each client is seen at its own
            # address, so per-IP limits count clients, not nginx.
            listed = (await http.get("/api/clients")).json()
            peers = {c["id"]: c["peer"] for c in listed if c["id"] in ("alice-ng", "bob-ng")}
            assert peers["alice-ng"].startswith("127.0.0.2:"), peers
            assert peers["bob-ng"].startswith("127.0.0.3:"), peers


async def answer_pings(client: WSClient, seconds: float) -> int:
    """Send nothing but ``pong`` for ``seconds``; return how many pings the hub sent."""
    pings = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await client.recv(timeout=left / FACTOR)
        except TimeoutError:
            break
        assert frame["type"] == "ping", frame
        pings += 1
        await client.send(type="pong")
    return pings


async def test_heartbeat_keeps_an_idle_client_open_past_the_proxy_read_timeout(
    hub_server, tmp_path, clients
):
    """With the read timeout shortened, the same config cuts a silent hub's client, not ours.

    The control (a hub with heartbeats off) shows nginx does close an idle socket at the
    shortened timeout; the hub with a heartbeat shorter than it keeps its client open for
    several timeouts, and the socket still works afterwards.
    """
    beating = await hub_server(heartbeat={"interval": 0.25})
    silent = await hub_server(heartbeat={"interval": 0})
    with (
        proxy(tmp_path / "beating", [beating.port] * 2, read_timeout=READ_TIMEOUT) as front,
        proxy(tmp_path / "silent", [silent.port] * 2, read_timeout=READ_TIMEOUT) as control,
    ):
        # ping_interval=None: no WebSocket-level pings from the client library either.
        kept = await open_client(front.ws, "idle-kept", ping_interval=None)
        clients.append(kept)
        cut = await open_client(control.ws, "idle-cut", ping_interval=None)
        clients.append(cut)
        room = room_name()
        await kept.request("join", room=room)
        await cut.request("join", room=room)

        async def until_cut() -> float:
            started = time.monotonic()
            code, _ = await cut.closed(timeout=(READ_TIMEOUT + TIMEOUT) / FACTOR)
            assert code is None, "nginx drops the socket; no close frame from the hub"
            return time.monotonic() - started

        pings, cut_after = await asyncio.gather(answer_pings(kept, 2.5 * READ_TIMEOUT), until_cut())
        assert READ_TIMEOUT * 0.8 <= cut_after < READ_TIMEOUT + TIMEOUT, cut_after
        assert pings >= 3, pings
        ack = await kept.request("publish", room=room, data="still here")
        assert ack["type"] == "ack", ack
        assert "upstream timed out" in control.log()


async def test_client_of_a_killed_hub_recovers_through_nginx_on_the_other(
    redis_server, tmp_path, clients
):
    nodes = start_nodes(redis_server, f"nk{uuid.uuid4().hex[:6]}", 2)
    try:
        with proxy(tmp_path / "nginx", [n.port for n in nodes]) as nginx:
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                node_of = {(await http.get(f"{n.http}/healthz")).json()["node"]: n for n in nodes}
                writer = await open_client(nginx.ws, "writer-k")
                clients.append(writer)
                reader = await open_client(nginx.ws, "reader-k")
                clients.append(reader)
                assert reader.welcome["node"] != writer.welcome["node"]
                room = room_name()
                await writer.request("join", room=room)
                await reader.request("join", room=room)
                for i in range(3):
                    await writer.request("publish", room=room, data=i)
                seen = [(await reader.wait_for("message", room=room))["offset"] for _ in range(3)]
                assert seen == [1, 2, 3]

                # The reader's node dies without warning; nginx drops the reader with it.
                victim = node_of[reader.welcome["node"]]
                victim.proc.kill()
                victim.proc.wait(TIMEOUT)
                code, _ = await reader.closed()
                assert code is None, "a killed hub sends no close frame"

                # Published while the reader is away: over WebSocket and over /api (via nginx).
                for i in range(3, 6):
                    await writer.request("publish", room=room, data=i)
                reply = await http.post(
                    f"{nginx.http}/api/rooms/{room}/publish", json={"data": "via-api"}
                )
                assert reply.status_code == 200 and reply.json()["offset"] == 7, reply.text

                # It reconnects to the same address and lands on the surviving node.
                reader = await open_client(nginx.ws, "reader-k")
                clients.append(reader)
                assert reader.welcome["node"] == writer.welcome["node"]
                # least_conn made the dead node (no connections) nginx's first choice after
                # the kill: it was refused and nginx passed the request on, unseen by clients.
                refused = [
                    line
                    for line in nginx.log().splitlines()
                    if "connect() failed" in line and f"127.0.0.1:{victim.port}/" in line
                ]
                assert refused, nginx.log()
                joined = await reader.request("join", room=room, since=seen[-1])
                assert joined["recovered"] is True and joined["offset"] == 7, joined
                replay = [await reader.wait_for("message", room=room) for _ in range(4)]
                assert [(m["offset"], m["data"]) for m in replay] == [
                    (4, 3),
                    (5, 4),
                    (6, 5),
                    (7, "via-api"),
                ]
                # Live traffic follows the replay, once.
                await writer.request("publish", room=room, data="live")
                live = await reader.wait_for("message", room=room)
                assert (live["offset"], live["data"]) == (8, "live")
    finally:
        for node in nodes:
            stop_node(node)
