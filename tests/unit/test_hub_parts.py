"""``Hub(settings, *, broker, runner, store)``: injected parts replace the configured ones,
and every producer's message goes through the one broker (the single delivery path)."""

from __future__ import annotations

import asyncio

import orjson

from memory_transport import MemoryTransport
from wirehub.brokers import MemoryBroker
from wirehub.core.connection import Connection
from wirehub.hub import Hub
from wirehub.jobs.local import LocalRunner
from wirehub.settings import load_settings
from wirehub.uploads.stores import SpoolStore


class RecordingBroker(MemoryBroker):
    """The reference broker, noting every message it sequences."""

    def __init__(self) -> None:
        super().__init__()
        self.sequenced: list[tuple[str, str, object]] = []

    def publish_nowait(self, room, sender, data, *, exclude):
        self.sequenced.append((room, sender, data))
        return super().publish_nowait(room, sender, data, exclude=exclude)


async def test_given_parts_replace_the_configured_ones_and_carry_every_message(tmp_path):
    broker, runner, store = RecordingBroker(), LocalRunner(concurrency=1), SpoolStore(tmp_path)
    hub = Hub(load_settings(None, stats_interval=0), broker=broker, runner=runner, store=store)
    assert hub.broker is broker and hub.node.broker is broker
    assert hub.jobs.runner is runner and hub.uploads.store is store

    sink = MemoryTransport()
    conn = Connection("alice", sink)
    hub.node.connect(conn)
    await hub.node.handle(conn, orjson.dumps({"type": "join", "room": "r"}))
    # Three producers: server code, a WebSocket frame, a synchronous caller.
    assert await hub.publish("r", "from the server") == 1
    frame = {"type": "publish", "room": "r", "data": "from alice", "echo": True}
    await hub.node.handle(conn, orjson.dumps(frame))
    assert hub.node.publish("r", "$hub", "sync") == 3
    assert broker.sequenced == [
        ("r", "$hub", "from the server"),
        ("r", "alice", "from alice"),
        ("r", "$hub", "sync"),
    ]
    for _ in range(100):
        if not conn.queued:
            break
        await asyncio.sleep(0)
    got = [orjson.loads(f) for f in sink.sent]
    assert [(f["type"], f.get("offset")) for f in got if f["type"] != "welcome"] == [
        ("joined", 0),
        ("message", 1),
        ("message", 2),
        ("ack", 2),
        ("message", 3),
    ]
    hub.node.disconnect(conn)
