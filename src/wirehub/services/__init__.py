"""Supervised services: external programs started, watched and stopped with the hub.

``Services`` (the hub component and ``hub.services`` mapping) holds one
:class:`Service` per ``[[services]]`` entry; see docs/services.md.
"""

from wirehub.services.component import Services
from wirehub.services.spec import ReadyCheck, RestartPolicy, ServiceSpec, start_order
from wirehub.services.supervisor import (
    SERVICES_ROOM,
    Service,
    ServiceError,
    ServiceState,
    log_room,
)

__all__ = [
    "SERVICES_ROOM",
    "ReadyCheck",
    "RestartPolicy",
    "Service",
    "ServiceError",
    "ServiceSpec",
    "ServiceState",
    "Services",
    "log_room",
    "start_order",
]
