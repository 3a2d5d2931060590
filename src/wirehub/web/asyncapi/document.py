"""The AsyncAPI 3.0.0 document of a hub: built-in frames, typed handlers, typed rooms.

The document describes the **hub** (the application), as AsyncAPI 3 does: a frame
a client sends is an operation the hub ``receive``s, with the frames it answers
as the operation's ``reply``; a frame the hub pushes is an operation it
``send``s. There is one channel, the WebSocket endpoint ``/ws``; every frame is
a message of it, told apart by its ``type``.

The parts:

* the built-in frames of docs/protocol.md, from :data:`wirehub.web.asyncapi.frames.FRAMES`;
* each handler registered with ``@hub.on(kind, model=..., reply_model=...)``:
  a ``receive`` operation whose payload is the model's JSON Schema (pydantic
  ``model_json_schema``), replied to with ``<kind>.ok`` and the reply model;
* each typed room (``hub.room(pattern, model=...)``, ``[[rooms]] model``):
  a ``publish`` and a ``message`` variant whose ``data`` is the model;
* with ``[auth] mode = "jwt"``, the security of the handshake: the OpenAPI
  document's ``bearer`` scheme (``Authorization: Bearer``) or the ``token``
  query parameter.

Model schemas live under ``components/schemas`` (pydantic's ``$defs`` hoisted,
one name per model and mode), so a model used by two frames is described once.
:class:`DocumentCache` builds the document once per registry state: a handler
or room registered later makes the next request build it again.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from wirehub.web.asyncapi.frames import CLIENT, FRAMES, REF, SERVER

if TYPE_CHECKING:
    from wirehub.hub import Hub
    from wirehub.typed import Schemas

__all__ = ["ASYNCAPI_VERSION", "CHANNEL", "DocumentCache", "Server", "build_document"]

ASYNCAPI_VERSION = "3.0.0"
#: The one channel: the WebSocket endpoint.
CHANNEL = "hub"
_CHANNEL_REF = {"$ref": f"#/channels/{CHANNEL}"}
_COMPONENT_REF = "#/components/schemas/{model}"
Doc = dict[str, Any]

DESCRIPTION = """\
The real-time API of a wirehub hub: JSON text frames over one WebSocket, `/ws`.

Operations are the hub's: **receive** is a frame a client sends (its `reply` lists what \
the hub answers, or an `error` with the same `ref`), **send** a frame the hub pushes. \
Every frame is one JSON object with a string `type`; a client frame may carry `ref`, \
echoed in its reply. docs/protocol.md is the prose authority; the HTTP API is in the \
OpenAPI document at `/docs`."""


@dataclass(frozen=True)
class Server:
    """Where the document says the hub is: ``host[:port]``, ``ws`` or ``wss``, and the
    path its routes sit under ("" at the root; AsyncAPI's ``pathname``)."""

    host: str
    protocol: Literal["ws", "wss"] = "ws"
    pathname: str = ""


def build_document(
    schemas: Schemas | None,
    *,
    server: Server,
    jwt: bool,
    title: str = "wirehub",
    version: str = "0.1.0",
) -> Doc:
    """The whole AsyncAPI 3.0.0 document (a fresh dict; JSON-serialisable)."""
    builder = _Builder(schemas)
    builder.add_builtin()
    if schemas is not None:
        builder.add_typed(schemas)
    hub_server: Doc = {
        **_server_block(server),
        "title": title,
        "summary": "The hub's WebSocket endpoint.",
    }
    components: Doc = {"schemas": builder.model_schemas}
    if jwt:
        components["securitySchemes"] = SECURITY_SCHEMES
        hub_server["security"] = [
            {"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY_SCHEMES
        ]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {"hub": hub_server},
        "channels": {
            CHANNEL: {
                "address": "/ws",
                "title": "WebSocket",
                "description": "One connection per client; rooms, direct messages, jobs and "
                "uploads all travel on it.",
                "messages": builder.messages,
                "bindings": {"ws": WS_BINDING},
            }
        },
        "operations": builder.operations,
        "components": components,
    }


#: The handshake's security, named as in the OpenAPI document (``bearer``, web/security.py).
SECURITY_SCHEMES: Doc = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <JWT>` on the upgrade request; its `sub` is "
        "the client id.",
    },
    "token": {
        "type": "httpApiKey",
        "name": "token",
        "in": "query",
        "description": "The same JWT as `?token=` (browsers cannot set headers on a WebSocket).",
    },
}

WS_BINDING: Doc = {
    "method": "GET",
    "query": {
        "type": "object",
        "properties": {
            "client_id": {
                "type": "string",
                "description": "1-128 characters of A-Z a-z 0-9 _ . : @ - (generated when "
                "absent); a second connection with the same id replaces the first (4409).",
            },
            "batch": {
                "type": "string",
                "enum": ["1", "true"],
                "description": "Several messages per text frame, LF-separated.",
            },
            "token": {"type": "string", "description": 'A JWT, with `[auth] mode = "jwt"`.'},
        },
    },
    "bindingVersion": "0.1.0",
}


class _Builder:
    """Accumulates messages, operations and model schemas (keys kept unique)."""

    def __init__(self, schemas: Schemas | None) -> None:
        self.messages: Doc = {}
        self.operations: Doc = {}
        self.model_schemas: Doc = {}
        self._models = _ModelSchemas(schemas)
        self.model_schemas = self._models.components

    # -- built-in frames ----------------------------------------------------------

    def add_builtin(self) -> None:
        for frame in FRAMES:
            message: Doc = {
                "name": frame.type,
                "title": frame.type if frame.key == frame.type else f"{frame.type} ({frame.key})",
                "summary": frame.summary,
                "payload": frame.payload(),
                "tags": [{"name": "built-in"}],
            }
            if frame.binary:
                message["contentType"] = "application/octet-stream"
            self.messages[frame.key] = message
        for frame in FRAMES:
            self._operation(frame.key, frame.direction, frame.summary, frame.replies)

    def _operation(self, key: str, direction: str, summary: str, replies: tuple[str, ...]) -> None:
        action = "receive" if direction == CLIENT else "send"
        operation: Doc = {
            "action": action,
            "channel": _CHANNEL_REF,
            "summary": summary,
            "messages": [_message_ref(key)],
        }
        if direction == CLIENT and key != "pong":
            operation["reply"] = {
                "channel": _CHANNEL_REF,
                "messages": [_message_ref(k) for k in (*replies, "error")],
            }
        self.operations[f"{action}.{key}"] = operation

    # -- typed handlers and rooms ------------------------------------------------

    def add_typed(self, schemas: Schemas) -> None:
        for entry in schemas.handlers.values():
            key = self._free_key(entry.kind)
            summary = entry.summary or f"The custom frame `{entry.kind}`."
            payload = self._frame_payload(entry.kind, entry.model, "validation")
            self.messages[key] = {
                "name": entry.kind,
                "title": entry.kind,
                "summary": summary,
                "payload": payload,
                "tags": [{"name": "handler"}],
            }
            replies: tuple[str, ...] = ()
            if entry.reply_model is not None:
                reply_key = self._free_key(entry.reply_type)
                self.messages[reply_key] = {
                    "name": entry.reply_type,
                    "title": entry.reply_type,
                    "summary": f"Reply to `{entry.kind}`.",
                    "payload": self._frame_payload(
                        entry.reply_type, entry.reply_model, "serialization"
                    ),
                    "tags": [{"name": "handler"}],
                }
                replies = (reply_key,)
                self._operation(reply_key, SERVER, f"Reply to `{entry.kind}`.", ())
            self._operation(key, CLIENT, summary, replies)
        for room in schemas.rooms:
            slug = re.sub(r"[^\w.\-]", "_", room.pattern)
            what = f"rooms `{room.pattern}` ({room.model.__name__})"
            publish = self._free_key(f"publish.room.{slug}")
            self.messages[publish] = self._room_message(
                "publish", room.pattern, room.model, "validation", f"Publish into {what}."
            )
            self._operation(publish, CLIENT, f"Publish into {what}.", ("ack",))
            message = self._free_key(f"message.room.{slug}")
            self.messages[message] = self._room_message(
                "message", room.pattern, room.model, "serialization", f"A message of {what}."
            )
            self._operation(message, SERVER, f"A message of {what}.", ())

    def _frame_payload(self, kind: str, model: type[BaseModel] | None, mode: JsonSchemaMode) -> Doc:
        envelope: Doc = {"type": {"type": "string", "const": kind}, "ref": REF}
        if model is None:
            return {
                "type": "object",
                "properties": envelope,
                "required": ["type"],
                "additionalProperties": True,
            }
        schema = self._models.inline(model, mode)
        # A reply model with a ``type`` field of its own names the reply's type.
        schema["properties"] = {**envelope, **schema.get("properties", {})}
        schema["required"] = ["type", *(r for r in schema.get("required", []) if r != "type")]
        schema["type"] = "object"
        return schema

    def _room_message(
        self, kind: str, pattern: str, model: type[BaseModel], mode: JsonSchemaMode, summary: str
    ) -> Doc:
        base = next(f for f in FRAMES if f.key == kind)
        payload = base.payload()
        payload["properties"]["room"] = {
            **payload["properties"]["room"],
            "description": f"A room matching `{pattern}` (fnmatch pattern).",
        }
        payload["properties"]["data"] = {
            "$ref": self._models.ref(model, mode),
            "description": f"Validated by {model.__name__}: a publish that does not fit is "
            "refused with `bad_request` and one `errors` entry per bad field.",
        }
        return {
            "name": kind,
            "title": f"{kind} ({pattern})",
            "summary": summary,
            "payload": payload,
            "tags": [{"name": "typed room"}],
        }

    def _free_key(self, key: str) -> str:
        if key not in self.messages:
            return key
        n = 2
        while f"{key}.{n}" in self.messages:
            n += 1
        return f"{key}.{n}"


class _ModelSchemas:
    """Every model's JSON Schema, once per (model, mode), under ``components/schemas``."""

    def __init__(self, schemas: Schemas | None) -> None:
        wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        if schemas is not None:
            for handler in schemas.handlers.values():
                if handler.model is not None:
                    wanted.append((handler.model, "validation"))
                if handler.reply_model is not None:
                    wanted.append((handler.reply_model, "serialization"))
            for room in schemas.rooms:
                wanted += [(room.model, "validation"), (room.model, "serialization")]
        self.components: Doc = {}
        self._refs: dict[tuple[object, JsonSchemaMode], str] = {}
        if not wanted:
            return
        unique = list(dict.fromkeys(wanted))
        refs, top = models_json_schema(unique, ref_template=_COMPONENT_REF)
        self.components = cast(Doc, top.get("$defs", {}))
        for key, schema in refs.items():
            self._refs[key] = str(schema["$ref"])

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> str:
        return self._refs[(model, mode)]

    def inline(self, model: type[BaseModel], mode: JsonSchemaMode) -> Doc:
        """A copy of the model's own schema (its nested models stay references)."""
        name = self.ref(model, mode).rsplit("/", 1)[1]
        return copy.deepcopy(cast(Doc, self.components[name]))


def _message_ref(key: str) -> Doc:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{_pointer(key)}"}


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class DocumentCache:
    """The document of one hub, built again only when its registry changed.

    The registry state is the tuple of registered handlers and rooms (frozen
    dataclasses, so comparing it costs a tuple comparison per request); the
    server block is filled per request from the URL the client used.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._key: object = None
        self._doc: Doc | None = None

    def get(self, server: Server) -> Doc:
        schemas = self._hub.schemas
        key = (tuple(schemas.handlers.values()), tuple(schemas.rooms))
        if self._doc is None or key != self._key:
            self._doc = document_for(self._hub, server)
            self._key = key
        doc = dict(self._doc)
        kept = {k: v for k, v in self._doc["servers"]["hub"].items() if k not in SERVER_KEYS}
        doc["servers"] = {"hub": {**_server_block(server), **kept}}
        return doc


def document_for(hub: Hub, server: Server | None = None) -> Doc:
    """The document of ``hub``; without ``server``, its configured host and port."""
    from wirehub import __version__

    if server is None:
        cfg = hub.settings.server
        server = Server(f"{cfg.host}:{cfg.port}")
    return build_document(
        hub.schemas, server=server, jwt=hub.settings.auth.mode == "jwt", version=__version__
    )


#: The server block's keys that come from the request (the rest from the hub).
SERVER_KEYS = ("host", "protocol", "pathname")


def _server_block(server: Server) -> Doc:
    block: Doc = {"host": server.host, "protocol": server.protocol}
    if server.pathname:
        block["pathname"] = server.pathname
    return block
