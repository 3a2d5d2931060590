"""Prometheus metrics for one hub, read from the core's plain counters at scrape time.

The core counts with ints (no cost per frame beyond an addition); this
collector turns them into metric families when ``/metrics`` is scraped. Each
hub has its own registry, so several hubs in one process do not collide.
"""

from __future__ import annotations

import gc
from collections import Counter as CounterType
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wirehub.core.node import Node

__all__ = ["HubMetrics"]


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        by_kind: CounterType[str] = CounterType(c.kind for c in node.clients.values())
        gauge = GaugeMetricFamily("wirehub_connections", "Open connections", labels=["kind"])
        for kind in ("ws", "sse", "tcp"):
            gauge.add_metric([kind], by_kind.get(kind, 0))
        yield gauge
        yield GaugeMetricFamily("wirehub_rooms", "Rooms held by this node", value=len(node.rooms))
        yield GaugeMetricFamily(
            "wirehub_gc_frozen_objects",
            "Objects kept out of garbage collection (gc.freeze, server.gc_freeze)",
            value=gc.get_freeze_count(),
        )
        yield CounterMetricFamily(
            "wirehub_connections", "Connections accepted", value=node.connections_total
        )
        yield CounterMetricFamily(
            "wirehub_frames_in", "Frames received from peers", value=node.frames_in
        )
        yield CounterMetricFamily(
            "wirehub_bytes_in", "Bytes received from peers", value=node.bytes_in
        )
        yield CounterMetricFamily(
            "wirehub_messages_published", "Messages published to rooms", value=node.rooms.published
        )
        yield CounterMetricFamily(
            "wirehub_deliveries",
            "Room messages and events queued to members",
            value=node.rooms.deliveries,
        )
        yield CounterMetricFamily(
            "wirehub_bytes_out",
            "Bytes of room frames queued to members",
            value=node.rooms.bytes_out,
        )
        yield CounterMetricFamily(
            "wirehub_publish_duplicates",
            "Publishes not delivered: their idempotency key was used within the window",
            value=node.broker.duplicates,
        )
        yield CounterMetricFamily(
            "wirehub_slow_consumer_disconnects",
            "Peers closed because their outbound queue was full",
            value=node.slow_consumers,
        )
        errors = CounterMetricFamily(
            "wirehub_errors",
            "Error replies sent, and requests or frames the wire layer refused, by code",
            labels=["code"],
        )
        for code, count in sorted(node.errors.items()):
            errors.add_metric([code], count)
        yield errors


class HubMetrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_NodeCollector(node))
        self.fanout_seconds = Histogram(
            "wirehub_fanout_seconds",
            "Time to encode a publish and queue it to every member",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        node.fanout_observer = self.fanout_seconds.observe
        #: How late the event loop ran a timer (core/looplag.py): a stall shows here.
        self.loop_lag_seconds = Histogram(
            "wirehub_loop_lag_seconds",
            "How late the event loop ran a callback scheduled for now (sampled)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        #: How long each garbage collection stopped the process (core/gcwatch.py).
        self.gc_pause_seconds = Histogram(
            "wirehub_gc_pause_seconds",
            "How long each garbage collection ran (the event loop waits for it), by generation",
            labelnames=["generation"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self._gc_pause_by_generation = [self.gc_pause_seconds.labels(str(g)) for g in range(3)]

    def observe_gc_pause(self, generation: int, seconds: float) -> None:
        self._gc_pause_by_generation[generation].observe(seconds)
