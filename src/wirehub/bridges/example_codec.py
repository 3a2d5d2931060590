"""An example device codec: a 5-byte binary sensor reading ↔ ``{"sensor", "temp", "humidity"}``.

The frame (big-endian) is ``sensor: u8, temp*10: i16, humidity*10: u16``, so
``01 00 d7 01 92`` is sensor 1 at 21.5 °C and 40.2 %. Use it with a
length-prefixed bridge::

    [[bridges]]
    name = "sensors"
    port = 9003
    framing = "length"
    decoder = "wirehub.bridges.example_codec:decode_reading"
    encoder = "wirehub.bridges.example_codec:encode_reading"

A codec is any pair of plain functions: ``decoder(bytes) -> JSON data`` (None
to publish nothing) and ``encoder(data) -> bytes`` (None to send nothing). An
exception is an error event for that one frame.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["decode_reading", "encode_reading"]

_READING = struct.Struct(">BhH")


def decode_reading(payload: bytes) -> dict[str, Any]:
    """Device bytes → JSON data; ValueError on a frame of the wrong size."""
    if len(payload) != _READING.size:
        raise ValueError(f"a reading is {_READING.size} bytes, got {len(payload)}")
    sensor, temp, humidity = _READING.unpack(payload)
    return {"sensor": sensor, "temp": temp / 10, "humidity": humidity / 10}


def encode_reading(data: Any) -> bytes:
    """JSON data → device bytes; KeyError/TypeError/struct.error on anything else."""
    return _READING.pack(
        int(data["sensor"]), round(float(data["temp"]) * 10), round(float(data["humidity"]) * 10)
    )
