"""Hostile bytes at a real ``wirehub serve``: oversized and slow request heads, control-frame floods.

Every attacker here is a raw socket with hand-made HTTP and masked WebSocket
frames. Each test asserts (a) the attacker's precise answer or close, (b) that
an honest client in another room receives every message published meanwhile,
and (c) that the hub process's memory stays within a bound. Bytes sent are a
few MB at most; the config shortens the handshake timeouts so each test takes
a second or two.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from support import FACTOR, TIMEOUT, HubProcess, WSClient, open_client, spawn_hub

MB = 1024 * 1024

# Short head timeouts, a small outbound bound, and no frame-rate limit (so a
# flood is answered and only the outbound bound stops it).
FLOOD_CONFIG = """
stats_interval = 0
[server]
handshake_timeout = 1.5
handshake_idle_timeout = 0.75
[limits]
rate = 0
queue_max_bytes = 65536
queue_max_lag = 0.5
close_timeout = 0.5
"""

# A low rate for the control-frame rate limit.
RATE_CONFIG = """
stats_interval = 0
[limits]
rate = 100
burst = 50
abuse_limit = 30
abuse_window = 10
"""


# -- a hub process whose output is read all along ----------------------------------


def serve(tmp_path: Path, config: str, env: dict[str, str] | None = None) -> HubProcess:
    path = tmp_path / "hub.toml"
    path.write_text(config)
    hp = spawn_hub(path, env=env)
    assert hp.proc.stdout is not None
    stdout = hp.proc.stdout

    def drain() -> None:  # the pipe must never fill up and block the hub
        for raw in stdout:
            hp.lines.append(raw.decode(errors="replace"))

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    hp.drainer = thread  # type: ignore[attr-defined]
    return hp


def stop(hp: HubProcess) -> None:
    if hp.proc.poll() is None:
        hp.signal()
        try:
            hp.wait(15)
        except Exception:
            hp.proc.kill()
            hp.proc.wait()
    hp.drainer.join(5)  # type: ignore[attr-defined]
    if hp.proc.stdout is not None:
        hp.proc.stdout.close()


@pytest.fixture(scope="module")
def flood_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hp = serve(tmp_path_factory.mktemp("flood"), FLOOD_CONFIG)
    yield hp
    stop(hp)


@pytest.fixture(scope="module")
def rate_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hp = serve(tmp_path_factory.mktemp("rate"), RATE_CONFIG)
    yield hp
    stop(hp)


def rss(hp: HubProcess) -> int:
    return psutil.Process(hp.proc.pid).memory_info().rss


def fds(hp: HubProcess) -> int:
    return psutil.Process(hp.proc.pid).num_fds()


async def metric(hp: HubProcess, name: str, code: str | None = None) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(hp.http + "/metrics", timeout=TIMEOUT)).text
    label = "" if code is None else f'{{code="{code}"}}'
    match = re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def wait_until(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout * FACTOR
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- the honest witness -----------------------------------------------------------


class Witness:
    """Two honest clients in their own room: one publishes all along, the other must get it all."""

    _n = 0

    def __init__(self, hp: HubProcess) -> None:
        self.hp = hp
        Witness._n += 1
        self.room = f"honest-{Witness._n}"
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self.speaker: WSClient
        self.listener: WSClient

    async def __aenter__(self) -> Witness:
        self.speaker = await open_client(self.hp.ws, f"speaker-{Witness._n}")
        self.listener = await open_client(self.hp.ws, f"listener-{Witness._n}")
        for client in (self.speaker, self.listener):
            await client.request("join", room=self.room)
        self._task = asyncio.create_task(self._publish())
        return self

    async def _publish(self) -> None:
        while True:
            await self.speaker.send(type="publish", room=self.room, data={"n": self.sent})
            self.sent += 1
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        while self.sent < 5 and not self._task.done():  # a few at least, even after a quick attack
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        try:
            if exc[0] is None:
                assert self.sent >= 5
                got = []
                while len(got) < self.sent:
                    frame = await self.listener.wait_for("message", room=self.room)
                    got.append(frame["data"]["n"])
                assert got == list(range(self.sent)), "the honest client missed messages"
        finally:
            await self.speaker.close()
            await self.listener.close()


# -- raw HTTP and WebSocket bytes ---------------------------------------------------


def upgrade(target: bytes = b"/ws", *headers: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET " + target + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def client_frame(opcode: int, payload: bytes = b"", *, mask: bool = True) -> bytes:
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head = bytes((0x80 | opcode, bit | size))
    else:
        head = bytes((0x80 | opcode, bit | 126)) + size.to_bytes(2, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(size)


async def response_head(reader: asyncio.StreamReader) -> tuple[int, str]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    text = head.decode("latin-1")
    return int(text.split(" ", 2)[1]), text.lower()


async def open_ws(
    hp: HubProcess, target: bytes = b"/ws"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", hp.port)
    writer.write(upgrade(target))
    status, _ = await response_head(reader)
    assert status == 101
    opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
    assert opcode == 1 and b'"welcome"' in payload
    return reader, writer


async def refused(hp: HubProcess, request: bytes, chunk: int = 64 * 1024) -> tuple[int, str, float]:
    """Send ``request`` while reading; return (status, head, seconds to the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hp.port)
    started = time.monotonic()

    async def push() -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(0, len(request), chunk):
                writer.write(request[i : i + chunk])
                await writer.drain()

    pusher = asyncio.create_task(push())
    try:
        status, head = await response_head(reader)
        elapsed = time.monotonic() - started
        # Then the end of the stream; a reset is fine once the answer is in
        # (a peer that keeps sending after the answer is cut off).
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
        writer.close()
    return status, head, elapsed


# -- request heads ------------------------------------------------------------------------


async def test_a_megabyte_request_line_gets_414_at_once(flood_hub):
    before, counted = (
        rss(flood_hub),
        await metric(flood_hub, "wirehub_errors_total", "uri_too_long"),
    )
    async with Witness(flood_hub):
        status, head, elapsed = await refused(flood_hub, upgrade(b"/ws?x=" + b"A" * MB))
    assert status == 414 and "connection: close" in head
    assert elapsed < 1.0 * FACTOR
    assert await metric(flood_hub, "wirehub_errors_total", "uri_too_long") == counted + 1
    assert rss(flood_hub) - before < 8 * MB


async def test_a_megabyte_of_headers_or_too_many_get_431(flood_hub):
    before = rss(flood_hub)
    counted = await metric(flood_hub, "wirehub_errors_total", "headers_too_large")
    big = [b"X-Pad-%d: %s" % (i, b"b" * 1000) for i in range(1000)]
    many = [b"X-H-%d: 1" % i for i in range(200)]
    async with Witness(flood_hub):
        for headers in (big, many):
            status, head, elapsed = await refused(flood_hub, upgrade(b"/ws", *headers))
            assert status == 431 and "connection: close" in head
            assert elapsed < 1.0 * FACTOR
    assert await metric(flood_hub, "wirehub_errors_total", "headers_too_large") == counted + 2
    assert rss(flood_hub) - before < 8 * MB


async def test_endless_headers_are_cut_off_and_memory_stays_flat(flood_hub):
    # 20 attackers at once, each streaming one header that never ends (4 MB
    # offered each: 80 MB if the hub buffered it).
    before = rss(flood_hub)
    endless = upgrade(b"/ws")[:-2] + b"X-Endless: " + b"e" * (4 * MB)
    async with Witness(flood_hub):
        answers = await asyncio.gather(*(refused(flood_hub, endless) for _ in range(20)))
    assert {status for status, _, _ in answers} == {431}
    assert rss(flood_hub) - before < 16 * MB


async def test_an_upgrade_the_websocket_layer_refuses_is_answered_and_closed(flood_hub):
    async with Witness(flood_hub):
        status, head, _ = await refused(flood_hub, b"POST" + upgrade(b"/ws")[3:])
    assert status == 405 and "connection: close" in head


SECRET = "s" * 40


@pytest.fixture(scope="module")
def jwt_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    config = 'stats_interval = 0\n[auth]\nmode = "jwt"\n'
    hp = serve(tmp_path_factory.mktemp("jwt"), config, {"WIREHUB_AUTH__SECRET": SECRET})
    yield hp
    stop(hp)


@pytest.mark.parametrize("place", ["query", "header"])
async def test_long_tokens_in_the_query_or_authorization_connect(jwt_hub, place):
    # A valid JWT of 9.6 KB and of 32 KiB (padded claims): 101 and the welcome.
    for size in (9600, 32 * 1024):
        claims = {"sub": f"user{size}", "exp": int(time.time()) + 300, "pad": "p" * size}
        token = jwt.encode(claims, SECRET, algorithm="HS256").encode()
        assert len(token) > size
        if place == "query":
            request = upgrade(b"/ws?token=" + token)
        else:
            request = upgrade(b"/ws", b"Authorization: Bearer " + token)
        reader, writer = await asyncio.open_connection("127.0.0.1", jwt_hub.port)
        writer.write(request)
        status, _ = await response_head(reader)
        assert status == 101, f"{len(token)}-byte token in the {place}: {status}"
        _, welcome = await asyncio.wait_for(read_frame(reader), TIMEOUT)
        assert f'"client_id":"user{size}"'.encode() in welcome
        writer.close()


# -- slow and silent peers -----------------------------------------------------------------


async def test_slowloris_sockets_are_closed_after_the_handshake_timeout(flood_hub):
    base_fds = fds(flood_hub)
    counted = await metric(flood_hub, "wirehub_errors_total", "handshake_timeout")
    request = upgrade(b"/ws")

    async def drip() -> tuple[float, bytes]:
        started = time.monotonic()  # before the accept, when the hub's clock starts
        reader, writer = await asyncio.open_connection("127.0.0.1", flood_hub.port)

        async def send() -> None:  # one byte every 0.3 s: never idle, never done
            for byte in request[:-2]:
                with contextlib.suppress(ConnectionError):
                    writer.write(bytes([byte]))
                await asyncio.sleep(0.3)

        sender = asyncio.create_task(send())
        try:
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            sender.cancel()
            writer.close()
        return time.monotonic() - started, answer

    async with Witness(flood_hub):
        results = await asyncio.gather(*(drip() for _ in range(100)))
    for elapsed, answer in results:
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 1.4 < elapsed < 1.5 + 1.5 * FACTOR
    assert await metric(flood_hub, "wirehub_errors_total", "handshake_timeout") == counted + 100

    async def fds_back() -> bool:
        return fds(flood_hub) <= base_fds + 2

    await wait_until(fds_back)


async def test_a_connection_that_sends_nothing_is_closed(flood_hub):
    async with Witness(flood_hub):
        started = time.monotonic()
        pairs = [await asyncio.open_connection("127.0.0.1", flood_hub.port) for _ in range(20)]
        answers = await asyncio.gather(*(asyncio.wait_for(r.read(), TIMEOUT) for r, _ in pairs))
        elapsed = time.monotonic() - started
    assert answers == [b""] * 20  # nothing asked, nothing answered: just closed
    assert 0.7 < elapsed < 0.75 + 1.5 * FACTOR
    for _, writer in pairs:
        writer.close()


async def test_a_stalled_second_request_on_a_keep_alive_connection_gets_408(flood_hub):
    reader, writer = await asyncio.open_connection("127.0.0.1", flood_hub.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head = await response_head(reader)
    assert status == 200 and "connection: close" not in head
    await reader.readexactly(int(re.search(r"content-length: (\d+)", head).group(1)))
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")  # and nothing more
    status, head = await response_head(reader)
    assert status == 408 and "connection: close" in head
    assert 0.7 < time.monotonic() - started < 0.75 + 1.5 * FACTOR
    writer.close()


# -- control frames ---------------------------------------------------------------------------


def ping_flood(port: int, budget: int, seconds: float) -> tuple[int, bytes, str]:
    """Upgrade, then send pings and never read; return (bytes sent, what was left to read, how it ended)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.2)
    sock.sendall(upgrade(b"/ws"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    chunk = client_frame(0x9, b"p" * 125) * 200
    sent, ended, deadline = 0, "budget", time.monotonic() + seconds
    while sent < budget:
        if time.monotonic() > deadline:
            ended = "deadline"
            break
        try:
            sent += sock.send(chunk)
        except TimeoutError:
            continue
        except OSError as exc:
            ended = type(exc).__name__
            break
    if ended == "deadline":  # still open: nothing to wait for
        sock.close()
        return sent, b"", ended
    # Now read what the hub left us: pongs, then its close frame or a reset.
    sock.settimeout(5 * FACTOR)
    tail = b""
    with contextlib.suppress(OSError):
        while data := sock.recv(1 << 16):
            tail = (tail + data)[-64:]
    sock.close()
    return sent, tail, ended


async def test_a_ping_flood_from_a_peer_that_never_reads_is_a_slow_consumer(flood_hub):
    before = rss(flood_hub)
    slow = await metric(flood_hub, "wirehub_slow_consumer_disconnects_total")
    async with Witness(flood_hub):
        sent, tail, ended = await asyncio.to_thread(ping_flood, flood_hub.port, 12 * MB, 8 * FACTOR)
    assert ended not in ("budget", "deadline"), f"still open after {sent} bytes of pings"
    # The hub wrote its close frame after the pongs it owed, or dropped the socket.
    assert b"\x88" not in tail or (b"\x0f\xa1" in tail)  # 4001
    assert await metric(flood_hub, "wirehub_slow_consumer_disconnects_total") == slow + 1
    assert rss(flood_hub) - before < 16 * MB
    assert "slow consumer" in flood_hub.output()


async def test_a_ping_flood_over_the_rate_is_not_answered_and_closes_4029(rate_hub):
    counted = await metric(rate_hub, "wirehub_errors_total", "rate_limited")
    async with Witness(rate_hub):
        reader, writer = await open_ws(rate_hub)
        started = time.monotonic()
        writer.write(client_frame(0x9, b"x") * 500)
        pongs, close = 0, None
        while close is None:
            opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
            if opcode == 0xA:
                pongs += 1
            elif opcode == 0x8:
                close = int.from_bytes(payload[:2], "big"), payload[2:].decode()
        writer.close()
    elapsed = time.monotonic() - started
    assert close == (4029, "too many frames over the rate limit")
    assert 50 <= pongs <= 50 + 100 * elapsed + 1  # the burst, and what the rate refilled meanwhile
    assert await metric(rate_hub, "wirehub_errors_total", "rate_limited") >= counted + 30


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x1, b"ok \xff\xfe not utf-8"), 1007),
        (client_frame(0x1, b'{"type":"ping"}', mask=False), 1002),
        (client_frame(0x3, b"reserved opcode"), 1002),
    ],
    ids=["invalid-utf8", "unmasked", "bad-opcode"],
)
async def test_a_protocol_violation_is_one_warning_and_a_count(rate_hub, frame, code):
    counted = await metric(rate_hub, "wirehub_errors_total", "protocol_error")
    mark = len(rate_hub.lines)
    async with Witness(rate_hub):
        reader, writer = await open_ws(rate_hub)
        writer.write(frame)
        opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, code)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
    assert await metric(rate_hub, "wirehub_errors_total", "protocol_error") == counted + 1
    lines = rate_hub.lines[mark:]
    warnings = [line for line in lines if "WARNING" in line and f"closing {code}" in line]
    assert len(warnings) == 1, lines
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines


# -- the other implementations -------------------------------------------------------------


needs_wsproto = pytest.mark.skipif(
    importlib.util.find_spec("wsproto") is None, reason="wsproto is not installed"
)


@pytest.mark.parametrize(
    "ws", ["websockets-sansio", "websockets", pytest.param("wsproto", marks=needs_wsproto)]
)
async def test_every_implementation_takes_long_heads_and_refuses_huge_ones(tmp_path, ws):
    hp = serve(tmp_path, f'stats_interval = 0\n[server]\nws = "{ws}"\n')
    try:
        async with Witness(hp):
            _, writer = await open_ws(hp, b"/ws?token=" + b"t" * 32 * 1024)
            writer.close()
            status, _, _ = await refused(hp, upgrade(b"/ws?x=" + b"A" * MB))
            assert status == 414
            status, _, _ = await refused(hp, upgrade(b"/ws", *(b"X-%d: 1" % i for i in range(200))))
            assert status == 431
    finally:
        stop(hp)


async def test_legacy_websockets_holds_a_ping_flood_by_backpressure(tmp_path):
    # Its pong waits for the socket to drain, which stops reading: the flood
    # stays in the kernel's buffers, not in the hub.
    hp = serve(tmp_path, 'stats_interval = 0\n[server]\nws = "websockets"\n[limits]\nrate = 0\n')
    try:
        before = rss(hp)
        async with Witness(hp):
            sent, _, ended = await asyncio.to_thread(ping_flood, hp.port, 12 * MB, 2 * FACTOR)
        assert ended == "deadline" and sent < 12 * MB  # the hub stopped taking them
        assert rss(hp) - before < 16 * MB
    finally:
        stop(hp)


@needs_wsproto
async def test_wsproto_answers_pings_within_the_bounds(tmp_path):
    hp = serve(tmp_path, FLOOD_CONFIG.replace("[server]", '[server]\nws = "wsproto"'))
    try:
        slow = await metric(hp, "wirehub_slow_consumer_disconnects_total")
        async with Witness(hp):
            sent, _, ended = await asyncio.to_thread(ping_flood, hp.port, 12 * MB, 8 * FACTOR)
        assert ended not in ("budget", "deadline"), f"still open after {sent} bytes of pings"
        assert await metric(hp, "wirehub_slow_consumer_disconnects_total") == slow + 1
    finally:
        stop(hp)
