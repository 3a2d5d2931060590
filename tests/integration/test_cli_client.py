"""``wirehub send``, ``tail`` and ``status`` as real subprocesses against a real hub."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson

from support import TIMEOUT
from wirehub.client import HubClient
from wirehub.core.protocol import CloseCode


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 6 * TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_publishes_json_and_prints_the_offset(hub):
    async with HubClient(hub.ws, client_id="listener") as listener:
        await listener.join("alerts")
        stream = listener.messages("alerts")
        code, out, err = await run_cli("send", "alerts", '{"level": 3}', "--url", hub.ws)
        assert code == 0, err
        assert out.strip() == "published to alerts at offset 1"
        got = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert got["data"] == {"level": 3}
        code, out, _ = await run_cli("send", "alerts", "plain words", "--url", hub.ws)
        assert code == 0 and out.strip() == "published to alerts at offset 2"
        assert (await asyncio.wait_for(anext(stream), TIMEOUT))["data"] == "plain words"
        # A retried send with its key answers the first offset and is not delivered again.
        retry = ("send", "alerts", '"once"', "--url", hub.ws, "--idempotency-key", "evt-9")
        outs = [await run_cli(*retry) for _ in range(2)]
        assert [o[1].strip() for o in outs] == ["published to alerts at offset 3"] * 2
        await run_cli("send", "alerts", '"after"', "--url", hub.ws)
        assert (await asyncio.wait_for(anext(stream), TIMEOUT))["data"] == "once"
        assert (await asyncio.wait_for(anext(stream), TIMEOUT))["data"] == "after"
        await stream.aclose()


async def test_send_reports_a_refusal_and_an_unreachable_hub(hub):
    code, _, err = await run_cli("send", "$hub.stats", "1", "--url", hub.ws)
    assert code == 1 and "forbidden: room '$hub.stats' is a system room" in err
    code, _, err = await run_cli("send", "x", "1", "--url", "ws://127.0.0.1:1/ws")
    assert code == 1 and "error:" in err


async def test_status_prints_tables_of_every_part(hub):
    async with HubClient(hub.ws, client_id="status-probe") as probe:
        await probe.join("lobby")
        code, out, err = await run_cli("status", "--url", hub.http)
    assert code == 0, err
    assert "ready" in out
    for title in ("Services", "TCP bridges", "Rooms", "Clients"):
        assert title in out
    assert "status-probe" in out and "lobby" in out
    code, _, err = await run_cli("status", "--url", "http://127.0.0.1:1")
    assert code == 1


async def test_tail_prints_each_message_once_across_a_drop(hub):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        "tail",
        "feed",
        "--url",
        hub.ws,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None

    async def line(stream: asyncio.StreamReader) -> str:
        return (await asyncio.wait_for(stream.readline(), 3 * TIMEOUT)).decode().strip()

    try:
        assert await line(proc.stderr) == "joined feed at offset 0"
        await hub.hub.publish("feed", "one")
        first = orjson.loads(await line(proc.stdout))
        assert (first["data"], first["offset"]) == ("one", 1)
        # The hub drops the tail (a missed heartbeat); what is said meanwhile is recovered.
        (conn,) = [c for c in hub.hub.node.clients.values() if "feed" in c.rooms]
        hub.hub.node.disconnect(conn, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
        await hub.hub.publish("feed", "two")
        await hub.hub.publish("feed", "three")
        assert await line(proc.stderr) == "disconnected (4002 heartbeat timeout)"
        printed = [orjson.loads(await line(proc.stdout)) for _ in range(2)]
        assert [(m["data"], m["offset"]) for m in printed] == [("two", 2), ("three", 3)]
        assert await line(proc.stderr) == "reconnected; re-joined feed"
        await hub.hub.publish("feed", "four")
        assert orjson.loads(await line(proc.stdout))["offset"] == 4  # no duplicates between
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def test_tail_reports_a_refused_room_and_an_unreachable_hub(hub):
    code, out, err = await run_cli("tail", "two words", "--url", hub.ws)
    assert code == 1 and out == ""
    assert "error: bad_request:" in err and "room" in err
    code, out, err = await run_cli("tail", "feed", "--url", "ws://127.0.0.1:1/ws")
    assert code == 1 and "error: ws://127.0.0.1:1/ws:" in err
