"""The README's tour app under the servers users run it with, as they run it.

Each test starts tests/programs/tour_app.py (the README's code) with a real
command line — ``uvicorn tests.programs.tour_app:app``, ``uvicorn --workers 2``,
``gunicorn -k uvicorn_worker.UvicornWorker``, ``granian`` — and checks over real
sockets what docs/deploy.md ("Embedded in your own app") promises under it:
welcome, join, publish and delivery (through the app's own route, a WebSocket
publish and a custom frame), the browser client ``/static/wirehub.js``, a
too-large frame closed with 1009, the hub's INFO lines in the server's output,
the start WARNING when something is not available, and SIGTERM closing clients
with ``1001 hub shutting down`` (granian: dropped, as documented and warned).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import socket

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from process_support import ServerProcess, venv_bin
from support import TIMEOUT, WSClient, open_client, unused_port

APP = "tests.programs.tour_app:app"
HUB_STARTED = r"hub \S+ started"
ADOPTED = "wirehub's protocols and shutdown order apply"


def needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"
    )


def start(args: list[str], *, workers: int = 1, env: dict[str, str] | None = None) -> ServerProcess:
    """Run a server command line; return once every worker's hub has started."""
    server = ServerProcess.start(args, env={"WIREHUB_STATS_INTERVAL": "0", **(env or {})})
    try:
        server.wait_line(HUB_STARTED, count=workers)
    except BaseException:
        server.stop()
        raise
    return server


async def ready(port: int, server: ServerProcess) -> None:
    """Wait for the port to answer /readyz (the server logs its hub before it listens)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(int(100 * TIMEOUT)):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if server.proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
    raise AssertionError(f"port {port} never became ready:\n{server.output()}")


async def tour(port: int) -> tuple[WSClient, WSClient]:
    """The README's tour as a user exercises it; returns two clients still open."""
    base = f"http://127.0.0.1:{port}"
    ws = f"ws://127.0.0.1:{port}/ws"
    async with httpx.AsyncClient(base_url=base) as http:
        client_js = await http.get("/static/wirehub.js")
        assert client_js.status_code == 200
        assert client_js.headers["content-type"].startswith("text/javascript")
        assert "export class HubClient" in client_js.text

        listener = await open_client(ws, "listener")
        assert (await listener.request("join", room="orders"))["type"] == "joined"
        talker = await open_client(ws, "talker")
        assert (await talker.request("join", room="orders"))["type"] == "joined"

        # The app's own route publishes (hub.publish): every member gets it.
        response = await http.post("/orders", json={"sku": "A1"})
        assert response.status_code == 200
        offset = response.json()["offset"]
        message = await listener.wait_for("message", room="orders", offset=offset)
        assert message["data"] == {"sku": "A1"} and message["from"] == "$hub"

    # A WebSocket publish, acknowledged and delivered.
    ack = await talker.request("publish", room="orders", data="hello")
    assert ack["type"] == "ack"
    message = await listener.wait_for("message", room="orders", offset=ack["offset"])
    assert message["data"] == "hello" and message["from"] == "talker"

    # The tour's custom frame type.
    assert (await talker.request("chat.typing", room="orders"))["type"] == "chat.typing.ok"
    typing = await listener.wait_for("message", room="orders", data={"typing": "talker"})
    assert typing["from"] == "talker"

    # A 2 MB text frame is over server.ws_max_size (1 MiB + 4 KiB): closed with 1009.
    big = await open_client(ws, "big")
    with contextlib.suppress(ConnectionClosed):  # closed as soon as the header says 2 MB
        await big.send_raw("x" * 2_000_000)
    code, _ = await big.closed()
    assert code == 1009
    assert (await listener.request("ping"))["type"] == "pong"  # the others go on
    return listener, talker


async def assert_sigterm_closes_with_1001(server: ServerProcess, clients: list[WSClient]) -> None:
    server.signal(signal.SIGTERM)
    for client in clients:
        frame = await client.wait_for("reconnect")
        assert frame["delay_ms"][0] <= frame["delay_ms"][1]
        assert await client.closed() == (1001, "hub shutting down")
    server.wait()
    output = server.output()
    assert "hub " in output and "stopped:" in output, output
    assert "Traceback" not in output, output


def request_head_bound(port: int) -> bytes:
    """Send a 100 KiB request line; return the status code the server answers with."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(64).split(b"\r\n")[0].split(b" ")[1]


async def test_uvicorn_app_app_keeps_every_guarantee():
    port = unused_port()
    server = start([venv_bin("uvicorn"), APP, "--port", str(port)])
    try:
        await ready(port, server)
        assert server.count(f"embedded in uvicorn: {ADOPTED}") == 1
        assert "not available here" not in server.output()
        assert server.count(r"INFO: .*jobs ready") == 1  # the hub's lines, in uvicorn's format
        # uvicorn was handed the hub's protocol classes: the head is bounded (414).
        assert request_head_bound(port) == b"414"
        clients = await tour(port)
        await assert_sigterm_closes_with_1001(server, list(clients))
    finally:
        server.stop()


async def test_uvicorn_workers_share_rooms_through_redis(redis_url):
    port = unused_port()
    server = start(
        [venv_bin("uvicorn"), APP, "--port", str(port), "--workers", "2"],
        workers=2,
        env={"WIREHUB_REDIS_URL": redis_url},
    )
    try:
        await ready(port, server)
        assert server.count(f"embedded in uvicorn: {ADOPTED}") == 2
        clients = await tour(port)
        await assert_sigterm_closes_with_1001(server, list(clients))
        assert server.count("Finished server process") == 2
    finally:
        server.stop()


@needs("gunicorn")
@needs("uvicorn_worker")
async def test_gunicorn_with_uvicorn_workers(redis_url):
    port = unused_port()
    args = [venv_bin("gunicorn"), "-k", "uvicorn_worker.UvicornWorker", "-w", "2"]
    args += ["-b", f"127.0.0.1:{port}", *_no_control_socket(), APP]
    server = start(args, workers=2, env={"WIREHUB_REDIS_URL": redis_url})
    try:
        await ready(port, server)
        assert server.count(f"embedded in gunicorn \\(uvicorn worker\\): {ADOPTED}") == 2
        assert "not available here" not in server.output()
        # The hub's lines in gunicorn's own format.
        assert server.count(r"\[\d+\] \[INFO\] hub \S+ started") == 2
        assert request_head_bound(port) == b"414"
        clients = await tour(port)
        await assert_sigterm_closes_with_1001(server, list(clients))
        assert server.proc.returncode == 0
    finally:
        server.stop()


def _no_control_socket() -> list[str]:
    """gunicorn 25+ opens a control socket in ~/.gunicorn; parallel runs must not share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return (
        ["--no-control-socket"]
        if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS)
        else []
    )


@needs("granian")
async def test_granian_warns_that_it_drops_websockets_on_shutdown():
    port = unused_port()
    server = start([venv_bin("granian"), "--interface", "asgi", "--port", str(port), APP])
    try:
        await ready(port, server)
        warning = server.wait_line(r"\[WARNING\] embedded in granian: not available here")
        # One line, naming what the docs say needs `wirehub serve` (or uvicorn/gunicorn).
        assert server.count("embedded in granian") == 1
        for missing in (
            "clients closed with 1001 on shutdown",
            "request-head bounds",
            "control-frame bounds",
            "the frame-once writer",
        ):
            assert missing in warning, warning
        assert server.count(r"\[INFO\] jobs ready") == 1  # the hub's lines, in granian's format
        listener, talker = await tour(port)  # including 1009: the hub's own cap (web/ws.py)
        # The documented answer under granian: it drops open WebSockets on SIGTERM
        # (no close frame) before the app's lifespan shutdown can close them.
        server.signal(signal.SIGTERM)
        for client in (listener, talker):
            code, _ = await client.closed()
            assert code is None
        server.wait()
        assert server.proc.returncode == 0
        assert "Traceback" not in server.output()
    finally:
        server.stop()


async def test_uvicorn_options_given_on_its_command_line_win_and_are_named():
    port = unused_port()
    server = start([venv_bin("uvicorn"), APP, "--port", str(port), "--ws", "websockets"])
    try:
        warning = server.wait_line("embedded in uvicorn: not available here")
        assert "control-frame bounds" in warning and "the frame-once writer" in warning
        assert "request-head bounds" not in warning  # --http is uvicorn's default: ours
        assert "1001" not in warning  # the shutdown order still applies
    finally:
        server.stop()
