"""Who may open a connection, by source address: a CIDR allowlist and a per-address cap.

Sans I/O, shared by the TCP bridges (``allow_from``, ``max_clients_per_ip``);
:meth:`PeerAdmission.admit` raises the error to report, :meth:`release` undoes
an admission when the peer goes.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable

from wirehub.errors import Forbidden, LimitExceeded

__all__ = ["PeerAdmission", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` → networks; ValueError names the bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network (CIDR like 10.0.0.0/8)") from None
    return tuple(networks)


class PeerAdmission:
    """Admit peers whose address is in ``allow_from`` (empty: any), at most N per address."""

    def __init__(self, allow_from: Iterable[str] = (), *, max_per_address: int = 0) -> None:
        self.networks = parse_networks(allow_from)
        self.max_per_address = max_per_address
        self.open: Counter[str] = Counter()

    def allowed(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def admit(self, host: str) -> None:
        """Count the peer in, or raise Forbidden (address) / LimitExceeded (per address)."""
        if not self.allowed(host):
            raise Forbidden(f"address {host} is not in the allowed networks")
        if self.max_per_address and self.open[host] >= self.max_per_address:
            raise LimitExceeded(
                f"address {host} already has {self.max_per_address} connections",
                limit=self.max_per_address,
            )
        self.open[host] += 1

    def release(self, host: str) -> None:
        left = self.open[host] - 1
        if left > 0:
            self.open[host] = left
        else:
            self.open.pop(host, None)
