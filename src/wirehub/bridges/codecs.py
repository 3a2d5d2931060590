"""Bytes of one TCP frame ↔ the JSON ``data`` of a room message.

Framing (``wirehub.core.framing``) cuts the stream into frames; a
:class:`Codec` turns each frame into the ``data`` that is published, and turns
``data`` published by others back into a frame's bytes:

====================  ==========================================  =================================
bridge settings       TCP frame → ``data``                        ``data`` → TCP frame
====================  ==========================================  =================================
``encoding="utf-8"``  text (invalid bytes become U+FFFD)          a string as is; other JSON as text
``encoding="base64"`` ``{"encoding": "base64", "data": "…"}``     that object or a base64 string is
                                                                  decoded; other JSON as text
``framing="jsonl"``   the parsed JSON value                       the JSON text of ``data``
``decoder=``          ``module:function(bytes) -> data``          —
``encoder=``          —                                           ``module:function(data) -> bytes``
====================  ==========================================  =================================

A decoder may return ``None`` to publish nothing for that frame; an encoder may
return ``None`` to send nothing. Any exception in either is an error event for
that one frame (:class:`CodecError`), never a dead bridge.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from collections.abc import Callable
from typing import Any

import orjson

from wirehub.errors import BadRequest, CodecError, ConfigError

__all__ = ["Codec", "CodecError", "Decoder", "Encoder", "load_function"]

Decoder = Callable[[bytes], Any]
Encoder = Callable[[Any], "bytes | None"]


def load_function(spec: str, *, what: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``; ConfigError naming ``what`` if it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} '{spec}' must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{what} '{spec}': cannot import {module_name}: {exc}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{what} '{spec}': {module_name} has no '{attr}'") from None
    if not callable(target):
        raise ConfigError(f"{what} '{spec}' is not callable")
    return target  # type: ignore[no-any-return]


class Codec:
    """The conversion one bridge applies in both directions (see the module table)."""

    __slots__ = ("_decoder", "_encoder", "encoding", "json_lines")

    def __init__(
        self,
        *,
        encoding: str = "utf-8",
        json_lines: bool = False,
        decoder: Decoder | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        if encoding not in ("utf-8", "base64"):
            raise ValueError(f"unknown encoding {encoding!r}; expected 'utf-8' or 'base64'")
        self.encoding = encoding
        self.json_lines = json_lines
        self._decoder = decoder
        self._encoder = encoder

    def decode(self, payload: bytes) -> Any:
        """One frame's bytes → JSON data; raises BadRequest / CodecError."""
        if self._decoder is not None:
            try:
                return self._decoder(payload)
            except Exception as exc:
                raise CodecError(f"decoder failed: {exc!r}") from None
        if self.json_lines:
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"invalid JSON line: {exc}") from None
        if self.encoding == "base64":
            return {"encoding": "base64", "data": base64.b64encode(payload).decode("ascii")}
        return payload.decode("utf-8", "replace")

    def encode(self, data: Any) -> bytes | None:
        """JSON data → one frame's bytes (None: nothing to send); raises CodecError."""
        if self._encoder is not None:
            try:
                out = self._encoder(data)
            except Exception as exc:
                raise CodecError(f"encoder failed: {exc!r}") from None
            if out is not None and not isinstance(out, bytes | bytearray | memoryview):
                raise CodecError(f"encoder returned {type(out).__name__}, not bytes")
            return None if out is None else bytes(out)
        if self.json_lines:
            return orjson.dumps(data)
        if self.encoding == "base64":
            blob = data.get("data") if _is_b64_object(data) else data
            if isinstance(blob, str):
                try:
                    return base64.b64decode(blob, validate=True)
                except (binascii.Error, ValueError):
                    raise CodecError("data is not valid base64") from None
        if isinstance(data, str):
            return data.encode("utf-8")
        return orjson.dumps(data)


def _is_b64_object(data: Any) -> bool:
    return isinstance(data, dict) and data.get("encoding") == "base64" and "data" in data
