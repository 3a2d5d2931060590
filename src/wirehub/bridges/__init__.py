"""TCP bridges: raw TCP ports whose clients are members of rooms (docs/bridges.md)."""

from wirehub.bridges.codecs import Codec, CodecError, load_function
from wirehub.bridges.manager import BridgeSet
from wirehub.bridges.tcp import BRIDGES_ROOM, BridgeConfig, TcpBridge, TcpTransport

__all__ = [
    "BRIDGES_ROOM",
    "BridgeConfig",
    "BridgeSet",
    "Codec",
    "CodecError",
    "TcpBridge",
    "TcpTransport",
    "load_function",
]
