"""The inter-node message format on the Redis channels: one encoder and one decoder.

Every message a node publishes to another is one tab-separated line; its first
byte says what it is. Encoded frames go last, so they may hold any byte::

    Z <node> <records>                    the sequenced messages of one room from one
                                          publish batch (the publish script builds it):
                                          per message ``<exclude> <offset> <size> <frame>``,
                                          ``<size>`` the frame's length in bytes, the
                                          frame's bytes then the next record, no separator
    P <node> <frame>                      a presence event (node empty: a reaped node's)
    G <node> <marker> <frame>             a gap notice after an outage, with its marker
    D <client> <frame>                    a direct frame for one client of the node
    K <client>                            close this client here: it connected elsewhere
    B <node> <frame>                      a frame for every client of every node
    R <node> <json>                       a token revocation (redis/revocations.py)

``<node>`` is the sender, so each node drops its own echo (for a ``Z`` batch,
after reading its first two fields only).
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
    "messages",
    "presence",
    "records",
    "revocation",
]

_TAB = "\t"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded channel message; only the fields of its ``kind`` are set.

    ``body``: a revocation's JSON, or a ``Z`` batch's undecoded records.
    """

    kind: str
    node: str = ""
    frame: str = ""
    offset: int = 0
    exclude: str | None = None
    client: str = ""
    marker: int = 0
    body: bytes = b""


def messages(node: str, records: list[tuple[str | None, int, str]]) -> str:
    """A ``Z`` line: what the publish script sends for one room's messages of one batch."""
    body = "".join(
        f"{exclude or ''}\t{offset}\t{len(frame.encode())}\t{frame}"
        for exclude, offset, frame in records
    )
    return f"Z\t{node}\t{body}"


def records(body: bytes) -> list[tuple[str | None, int, str]]:
    """The ``(exclude, offset, frame)`` records of a ``Z`` line's body, in order.

    ValueError for a truncated or malformed body (nothing of it is returned).
    """
    found: list[tuple[str | None, int, str]] = []
    at, end = 0, len(body)
    while at < end:
        tab1 = body.index(b"\t", at)
        tab2 = body.index(b"\t", tab1 + 1)
        tab3 = body.index(b"\t", tab2 + 1)
        size = int(body[tab2 + 1 : tab3])
        start = tab3 + 1
        if size < 0 or start + size > end:
            raise ValueError("truncated Z record")
        exclude = body[at:tab1].decode() or None
        found.append((exclude, int(body[tab1 + 1 : tab2]), body[start : start + size].decode()))
        at = start + size
    return found


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
    if tag == b"Z":
        _, node, body = data.split(b"\t", 2)
        return Inbound("Z", node.decode(), body=body)  # records(body): only if not our own
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
