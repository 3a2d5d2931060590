"""Hub nodes as real ``python -m wirehub serve`` processes sharing one Redis."""

from __future__ import annotations

import signal
import threading

from support import FACTOR, HubProcess, spawn_hub

__all__ = ["node_env", "start_node", "start_nodes", "stop_node"]


def node_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "WIREHUB_REDIS_URL": redis_url,
        "WIREHUB_REDIS__PREFIX": prefix,
        "WIREHUB_REDIS__NODE_HEARTBEAT": "0.2",
        "WIREHUB_REDIS__NODE_TTL": "1.0",
        "WIREHUB_REDIS__GAP_TIMEOUT": "0.3",
        "WIREHUB_REDIS__RECONNECT_CAP": "0.5",
        "WIREHUB_STATS_INTERVAL": "0",
        **extra,
    }


def start_node(redis_url: str, prefix: str, **extra: str) -> HubProcess:
    """A hub process whose output is drained by a thread (it never blocks on a full pipe)."""
    node = spawn_hub(env=node_env(redis_url, prefix, **extra))
    assert node.proc.stdout is not None
    stdout = node.proc.stdout

    def pump() -> None:
        for raw in stdout:
            node.lines.append(raw.decode(errors="replace"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    PUMPS[id(node)] = thread
    return node


PUMPS: dict[int, threading.Thread] = {}


def stop_node(node: HubProcess) -> None:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(10 * FACTOR)
        except Exception:
            node.proc.kill()
            node.proc.wait()
    pump = PUMPS.pop(id(node), None)
    if pump is not None:
        pump.join(5)
    if node.proc.stdout is not None:
        node.proc.stdout.close()


def start_nodes(redis_url: str, prefix: str, count: int) -> list[HubProcess]:
    """Start ``count`` nodes at once (each takes a second or so to import)."""
    nodes: list[HubProcess | BaseException] = [RuntimeError("not started")] * count

    def one(i: int) -> None:
        try:
            nodes[i] = start_node(redis_url, prefix)
        except BaseException as exc:
            nodes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [n for n in nodes if isinstance(n, HubProcess)]
    if len(started) != count:
        for n in started:
            stop_node(n)
        raise next(n for n in nodes if isinstance(n, BaseException))
    return started
