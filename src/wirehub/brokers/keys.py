"""Every Redis key and pub/sub channel of the Redis broker, in one place.

All names start with the configured prefix (``wirehub`` by default), so two
hubs can share one Redis by using two prefixes. The job runner's keys
(``<prefix>:job:*``) live in ``wirehub.jobs.celery`` and do not overlap.

=============================  ======  ==============================================
name                           type    holds
=============================  ======  ==============================================
``P:room:R:offset``            string  R's last offset (INCR; never expires)
``P:room:R:stream``            stream  R's history: id ``<offset>-0``, fields t, x, f
``P:room:R:gap``               string  highest offset at which some node resynced
                                       after publishing locally during an outage
``P:room:R``                   channel R's messages, presence events, gap notices
``P:idem:R K``                 string  the offset of R's first publish with
                                       idempotency key K (PX = the window); the
                                       space ends R (a room name has none)
``P:presence:R``               hash    client id → node id, every member of R
``P:nodes``                    zset    node id → heartbeat deadline (ms)
``P:node:N:presence``          set     ``room\\tclient`` pairs node N registered
``P:node:N:clients``           hash    client id → JSON record (kind, peer, since)
``P:node:N``                   channel direct frames and kicks for node N
``P:clients``                  hash    client id → node id, every connected client
``P:broadcast``                channel frames for every client of every node
=============================  ======  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under one ``prefix``."""

    prefix: str = "wirehub"

    def offset(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:offset"

    def stream(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:stream"

    def gap(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:gap"

    def idempotency(self, room: str, key: str) -> str:
        return f"{self.prefix}:idem:{room} {key}"

    def room_channel(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    def room_of_channel(self, channel: str) -> str | None:
        head = f"{self.prefix}:room:"
        return channel[len(head) :] if channel.startswith(head) else None

    def presence(self, room: str) -> str:
        return f"{self.prefix}:presence:{room}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}:nodes"

    def node_presence(self, node: str) -> str:
        return f"{self.prefix}:node:{node}:presence"

    def node_clients(self, node: str) -> str:
        return f"{self.prefix}:node:{node}:clients"

    def node_channel(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    @property
    def clients(self) -> str:
        return f"{self.prefix}:clients"

    @property
    def broadcast(self) -> str:
        return f"{self.prefix}:broadcast"
