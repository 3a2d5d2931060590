"""Garbage-collector pauses: timed into /metrics, and ``wirehub serve`` freezes its start-up heap.

A full collection stops the event loop for as long as it walks the heap
(37-95 ms measured with 500 subscribers before ``server.gc_freeze``): the
hub must say so in ``/metrics``, and ``wirehub serve`` must keep what was
alive at start out of every later collection.
"""

from __future__ import annotations

import gc
import re

import httpx

from support import TIMEOUT, spawn_hub


def _sample(text: str, name: str, labels: str = "") -> float | None:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def test_a_full_collection_in_the_hub_process_shows_in_metrics(hub):
    async with httpx.AsyncClient(base_url=hub.http, timeout=TIMEOUT) as http:
        before = (await http.get("/metrics")).text
        count0 = _sample(before, "wirehub_gc_pause_seconds_count", '{generation="2"}') or 0.0
        gc.collect()
        gc.collect()
        after = (await http.get("/metrics")).text
    count = _sample(after, "wirehub_gc_pause_seconds_count", '{generation="2"}')
    total = _sample(after, "wirehub_gc_pause_seconds_sum", '{generation="2"}')
    assert count is not None and count >= count0 + 2
    assert total is not None and total > 0


async def test_a_stopped_hub_times_no_more_collections(hub_server):
    running = await hub_server()
    hub = running.hub
    assert hub.gc_watch.running
    gc.collect()
    seen = hub.gc_watch.pauses[2]
    assert seen >= 1
    await hub.stop()
    assert not hub.gc_watch.running
    gc.collect()
    assert hub.gc_watch.pauses[2] == seen


def _frozen(env: dict[str, str] | None = None) -> float:
    hp = spawn_hub(env=env)
    try:
        text = httpx.get(f"{hp.http}/metrics", timeout=TIMEOUT).text
    finally:
        hp.cleanup()
    value = _sample(text, "wirehub_gc_frozen_objects")
    assert value is not None, text[:2000]
    return value


def test_wirehub_serve_keeps_its_start_up_heap_out_of_collections():
    # The modules, the app and the settings: tens of thousands of objects no
    # full collection walks again.
    assert _frozen() > 10_000


def test_gc_freeze_false_leaves_the_collector_alone():
    assert _frozen({"WIREHUB_SERVER__GC_FREEZE": "false"}) == 0
