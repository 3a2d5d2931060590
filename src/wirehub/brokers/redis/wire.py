"""The inter-node message format on the Redis channels: one encoder and one decoder.

Every message a node publishes to another is one tab-separated line; its first
byte says what it is. Encoded frames go last, so they may hold any byte::

    M <node> <exclude> <offset> <frame>   a sequenced room message (the publish script
                                          appends ``<offset> <frame>`` to message_prefix)
    P <node> <frame>                      a presence event (node empty: a reaped node's)
    G <node> <marker> <frame>             a gap notice after an outage, with its marker
    D <client> <frame>                    a direct frame for one client of the node
    K <client>                            close this client here: it connected elsewhere
    B <node> <frame>                      a frame for every client of every node
    R <node> <json>                       a token revocation (redis/revocations.py)

``<node>`` is the sender, so each node drops its own echo.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Inbound",
    "broadcast",
    "decode",
    "direct",
    "gap",
    "kick",
    "message",
    "message_prefix",
    "presence",
    "revocation",
]

_TAB = "\t"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded channel message; only the fields of its ``kind`` are set."""

    kind: str
    node: str = ""
    frame: str = ""
    offset: int = 0
    exclude: str | None = None
    client: str = ""
    marker: int = 0
    body: bytes = b""


def message_prefix(node: str, exclude: str | None) -> str:
    """What precedes ``<offset>\\t<frame>`` in an ``M`` line (the Lua script appends them)."""
    return f"M\t{node}\t{exclude or ''}\t"


def message(node: str, exclude: str | None, offset: int, frame: str) -> str:
    return f"{message_prefix(node, exclude)}{offset}\t{frame}"


def presence(node: str, frame: str) -> str:
    return f"P\t{node}\t{frame}"


def gap(node: str, marker: int, frame: str) -> str:
    return f"G\t{node}\t{marker}\t{frame}"


def direct(client_id: str, frame: str) -> str:
    return f"D\t{client_id}\t{frame}"


def kick(client_id: str) -> str:
    return f"K\t{client_id}"


def broadcast(node: str, frame: str) -> str:
    return f"B\t{node}\t{frame}"


def revocation(node: str, body: bytes) -> bytes:
    return b"\t".join((b"R", node.encode(), body))


def decode(data: bytes) -> Inbound:
    """Parse one channel message; ValueError for an unknown or truncated one."""
    tag = data[:1]
    if tag == b"M":
        _, node, exclude, offset, frame = data.split(b"\t", 4)
        return Inbound("M", node.decode(), frame.decode(), int(offset), exclude.decode() or None)
    if tag == b"P":
        _, node, frame = data.split(b"\t", 2)
        return Inbound("P", node.decode(), frame.decode())
    if tag == b"G":
        _, node, marker, frame = data.split(b"\t", 3)
        return Inbound("G", node.decode(), frame.decode(), marker=int(marker))
    if tag == b"D":
        _, client, frame = data.split(b"\t", 2)
        return Inbound("D", frame=frame.decode(), client=client.decode())
    if tag == b"K":
        if data[1:2] != b"\t":
            raise ValueError("truncated K message")
        return Inbound("K", client=data[2:].decode())
    if tag == b"B":
        _, node, frame = data.split(b"\t", 2)
        return Inbound("B", node.decode(), frame.decode())
    if tag == b"R":
        _, node, body = data.split(b"\t", 2)
        return Inbound("R", node.decode(), body=body)
    raise ValueError(f"unknown inter-node message {data[:16]!r}")
