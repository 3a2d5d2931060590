"""The built-in protocol frames, once, as data: what the AsyncAPI document describes.

docs/protocol.md is the prose authority on the wire; this module is its
machine-readable twin, and ``tests/integration/test_asyncapi.py`` checks that the
two name the same frames with the same fields. Each :class:`FrameDef` is one
kind of JSON text frame (or the binary upload chunk) in one direction, with a
JSON Schema per field; :mod:`wirehub.web.asyncapi.document` turns them into
AsyncAPI messages and operations. Nothing here is used on the hot path: the hub
parses frames in ``wirehub.core.protocol``, which stays as fast as it is.

A frame ``type`` may have several variants (``left`` as a reply and ``left``
after a revoked grant; ``job.output`` with ``data`` or ``items``): each variant
has its own ``key``, the message id in the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CLIENT",
    "ENVELOPE",
    "FRAMES",
    "SERVER",
    "Field",
    "FrameDef",
    "by_key",
]

Schema = dict[str, Any]
Direction = Literal["client", "server"]
#: Sent by the client (the hub receives it) / sent by the hub (the client receives it).
CLIENT: Direction = "client"
SERVER: Direction = "server"

#: Keys every frame may carry besides its fields: ``type``, and ``ref`` (echoed in the reply).
ENVELOPE = ("type", "ref")

REF: Schema = {
    "description": "Echoed in the reply to this frame: a string (at most 128 characters) "
    "or an integer.",
    "oneOf": [{"type": "string", "maxLength": 128}, {"type": "integer"}],
}


@dataclass(frozen=True)
class Field:
    """One field of a frame: its JSON Schema, and whether every frame of the kind has it."""

    schema: Schema
    required: bool = True


@dataclass(frozen=True)
class FrameDef:
    """One kind of frame in one direction (see the module docstring)."""

    key: str  # message id in the document, unique
    type: str  # the frame's ``type``
    direction: Direction
    summary: str
    fields: dict[str, Field] = field(default_factory=dict)
    #: Keys of the frames the hub answers this client frame with (``error`` is implied).
    replies: tuple[str, ...] = ()
    #: False for frames that carry more than their listed fields (``error``).
    closed: bool = True
    #: ``application/octet-stream`` for the binary upload chunk (no JSON payload).
    binary: bool = False

    def payload(self) -> Schema:
        """The JSON Schema of the whole frame: its ``type`` constant, ``ref`` and fields."""
        if self.binary:
            return {"type": "string", "format": "binary", "description": self.summary}
        props: dict[str, Schema] = {"type": {"type": "string", "const": self.type}}
        if self.direction == CLIENT or self.replies or self.key == "error" or _is_reply(self):
            props["ref"] = REF
        props.update({name: f.schema for name, f in self.fields.items()})
        required = ["type", *(name for name, f in self.fields.items() if f.required)]
        schema: Schema = {"type": "object", "properties": props, "required": required}
        if not self.closed:
            schema["additionalProperties"] = True
        return schema


def _is_reply(frame: FrameDef) -> bool:
    return any(frame.key in f.replies for f in FRAMES)


# -- field schemas ------------------------------------------------------------------


def _s(description: str, **schema: Any) -> Field:
    return Field({"description": description, **schema})


def _opt(description: str, **schema: Any) -> Field:
    return Field({"description": description, **schema}, required=False)


def _room(what: str = "The room's name") -> Field:
    return _s(
        f"{what}: 1-200 characters, no whitespace or control characters.",
        type="string",
        minLength=1,
        maxLength=200,
    )


CLIENT_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.:@-]+$"}
OFFSET = {"type": "integer", "minimum": 0}
ANY: Schema = {}  # any JSON value
ERROR_DETAIL = {
    "type": "object",
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    "required": ["type", "message"],
}

_JOB_ID = _s("The job's id.", type="string")
_UPLOAD_ID = _s("The upload's id.", type="string")

# -- the frames ---------------------------------------------------------------------

FRAMES: tuple[FrameDef, ...] = (
    # Client -> server
    FrameDef(
        "join",
        "join",
        CLIENT,
        "Join a room; with `since`, recover what was missed.",
        {
            "room": _room(),
            "since": _opt("Replay every kept message with an offset greater than this.", **OFFSET),
        },
        replies=("joined",),
    ),
    FrameDef("leave", "leave", CLIENT, "Leave a room.", {"room": _room()}, replies=("left",)),
    FrameDef(
        "publish",
        "publish",
        CLIENT,
        "Publish `data` to every member of a room.",
        {
            "room": _room(),
            "data": _s("Any JSON value (a typed room validates it with its model)."),
            "echo": _opt("Receive the message yourself too.", type="boolean", default=False),
            "idempotency_key": _opt(
                "A retry with the same key in the same room within the window is not delivered "
                "again and is answered with the first publish's offset.",
                type="string",
                minLength=1,
                maxLength=128,
            ),
        },
        replies=("ack",),
    ),
    FrameDef(
        "direct",
        "direct",
        CLIENT,
        "Send `data` to one client, on any node.",
        {
            "to": _s("The receiving client's id.", **CLIENT_ID),
            "data": _s("Any JSON value."),
        },
        replies=("ack.direct",),
    ),
    FrameDef(
        "presence",
        "presence",
        CLIENT,
        "Ask for a room's member list.",
        {
            "room": _room(),
        },
        replies=("presence.members",),
    ),
    FrameDef("ping", "ping", CLIENT, "Check the connection.", replies=("pong.reply",)),
    FrameDef("pong", "pong", CLIENT, "Answer the hub's heartbeat `ping` (no reply)."),
    FrameDef(
        "refresh",
        "refresh",
        CLIENT,
        "Replace the connection's token.",
        {
            "token": _s("A new JWT of the same `sub`.", type="string"),
        },
        replies=("refreshed",),
    ),
    FrameDef(
        "job.submit",
        "job.submit",
        CLIENT,
        "Start a registered job.",
        {
            "job": _s("The job's registered name.", type="string"),
            "args": _s("The job's keyword arguments.", type="object"),
        },
        replies=("job.accepted",),
    ),
    FrameDef(
        "job.cancel",
        "job.cancel",
        CLIENT,
        "Cancel a job you submitted.",
        {
            "job_id": _JOB_ID,
        },
        replies=("job.cancelled",),
    ),
    FrameDef(
        "upload.start",
        "upload.start",
        CLIENT,
        "Start (or resume) a chunked upload.",
        {
            "name": _s("The file's name.", type="string"),
            "size": _s("The file's size in bytes.", type="integer", minimum=0),
            "sha256": _s("The whole file's SHA-256, hex.", type="string"),
            "job": _opt("A job to run on the file once complete.", type="string"),
            "args": _opt("That job's arguments.", type="object"),
            "upload_id": _opt("Resume this upload.", type="string"),
        },
        replies=("upload.ready",),
    ),
    FrameDef(
        "upload.chunk",
        "upload.chunk",
        CLIENT,
        "A binary WebSocket frame: the raw bytes of the next chunk (at most `chunk_size`).",
        replies=("upload.ack",),
        binary=True,
    ),
    FrameDef(
        "upload.finish",
        "upload.finish",
        CLIENT,
        "Finish an upload (size and hash checked).",
        {"upload_id": _UPLOAD_ID},
        replies=("upload.complete",),
    ),
    # Server -> client
    FrameDef(
        "welcome",
        "welcome",
        SERVER,
        "The first frame of every connection.",
        {
            "client_id": _s("Your client id.", **CLIENT_ID),
            "node": _s("The hub node you are connected to.", type="string"),
            "heartbeat": _s("Seconds of silence before the hub pings you.", type="number"),
            "max_frame": _s("The largest text frame the hub reads, in bytes.", type="integer"),
            "batch": _opt(
                "Present and true when the connection asked for `batch=1`.", type="boolean"
            ),
        },
    ),
    FrameDef(
        "joined",
        "joined",
        SERVER,
        "Reply to `join`.",
        {
            "room": _room(),
            "offset": _s("The room's current offset.", **OFFSET),
            "members": _opt(
                "Member ids (at most 1000), while the room sends presence events.",
                type="array",
                items={"type": "string"},
                maxItems=1000,
            ),
            "member_count": _s("The exact member count.", type="integer", minimum=0),
            "recovered": _opt(
                "With `since`: true when every missed message follows.", type="boolean"
            ),
            "first_offset": _opt("With `since`: the oldest offset still kept.", **OFFSET),
        },
    ),
    FrameDef("left", "left", SERVER, "Reply to `leave`.", {"room": _room()}),
    FrameDef(
        "left.revoked",
        "left",
        SERVER,
        "A `refresh` took away the grant for a room you were in.",
        {
            "room": _room(),
            "reason": _s("Why you left.", type="string", const="revoked"),
        },
    ),
    FrameDef(
        "refreshed",
        "refreshed",
        SERVER,
        "Reply to `refresh`: the new token is in force.",
        {
            "exp": _s("The new token's expiry (Unix time).", type="number"),
        },
    ),
    FrameDef(
        "token.expiring",
        "token.expiring",
        SERVER,
        "The connection's token expires soon: send `refresh`.",
        {
            "exp": _s("The token's expiry (Unix time).", type="number"),
            "in": _s("Seconds left.", type="number"),
        },
    ),
    FrameDef(
        "reconnect",
        "reconnect",
        SERVER,
        "The hub is shutting down; reconnect after a random delay in this window.",
        {
            "delay_ms": _s(
                "[min, max] milliseconds.",
                type="array",
                items={"type": "integer", "minimum": 0},
                minItems=2,
                maxItems=2,
            ),
        },
    ),
    FrameDef(
        "ack",
        "ack",
        SERVER,
        "Reply to `publish`.",
        {
            "room": _room(),
            "offset": _s("The message's offset (0: not kept, during a Redis outage).", **OFFSET),
        },
    ),
    FrameDef(
        "ack.direct",
        "ack",
        SERVER,
        "Reply to `direct`.",
        {
            "to": _s("The receiving client's id.", **CLIENT_ID),
        },
    ),
    FrameDef(
        "message",
        "message",
        SERVER,
        "Something was published in a room you are in.",
        {
            "room": _room(),
            "from": _s(
                "The publisher: a client id, `$hub`, or `tcp:<bridge>:<host>:<port>`.",
                type="string",
            ),
            "data": _s("The published JSON value."),
            "offset": _s(
                "The message's offset in the room (null during a Redis outage).",
                type=["integer", "null"],
                minimum=1,
            ),
            "ts": _s("The server's Unix time in seconds.", type="number"),
            "local": _opt(
                "True when delivered on this node only, during a Redis outage.", type="boolean"
            ),
        },
    ),
    FrameDef(
        "presence.event",
        "presence",
        SERVER,
        "A member joined or left a room.",
        {
            "room": _room(),
            "event": _s("What happened.", type="string", enum=["join", "leave"]),
            "client_id": _s("The member.", **CLIENT_ID),
            "kind": _s("The member's connection kind.", type="string", enum=["ws", "sse", "tcp"]),
        },
    ),
    FrameDef(
        "presence.members",
        "presence",
        SERVER,
        "Reply to a `presence` query.",
        {
            "room": _room(),
            "members": _s(
                "Member ids (at most 1000).", type="array", items={"type": "string"}, maxItems=1000
            ),
            "member_count": _s("The exact member count.", type="integer", minimum=0),
        },
    ),
    FrameDef(
        "direct.received",
        "direct",
        SERVER,
        "Someone sent you a direct message.",
        {
            "from": _s("The sender's client id (`$hub` for the server).", type="string"),
            "data": _s("The JSON value sent."),
        },
    ),
    FrameDef(
        "broadcast",
        "broadcast",
        SERVER,
        "The server sent something to every connection.",
        {
            "from": _s("The sender (`$hub`).", type="string"),
            "data": _s("The JSON value sent."),
        },
    ),
    FrameDef(
        "pong.reply",
        "pong",
        SERVER,
        "Reply to `ping`.",
        {
            "ts": _s("The server's Unix time in seconds.", type="number"),
        },
    ),
    FrameDef("ping.heartbeat", "ping", SERVER, "Heartbeat: answer with any frame (`pong`)."),
    FrameDef(
        "error",
        "error",
        SERVER,
        "The frame with this `ref` was refused.",
        {
            "code": _s(
                "The error code.",
                type="string",
                enum=[
                    "bad_request",
                    "unknown_type",
                    "not_found",
                    "forbidden",
                    "unauthorized",
                    "too_large",
                    "limit_exceeded",
                    "rate_limited",
                    "conflict",
                    "internal",
                ],
            ),
            "message": _s("What went wrong, readable.", type="string"),
            "errors": _opt(
                "One entry per bad field (typed frames and rooms), at most 20.",
                type="array",
                maxItems=20,
                items={
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["field", "message"],
                },
            ),
        },
        closed=False,
    ),
    FrameDef(
        "gap",
        "gap",
        SERVER,
        "Messages of a room may be missing (Redis outage): treat like `recovered: false`.",
        {
            "room": _room(),
            "reason": _s(
                "Why.", type="string", enum=["broker_outage", "history_trimmed", "broker_reset"]
            ),
            "offset": _opt("`broker_outage`: where it happened.", **OFFSET),
            "from_offset": _opt("`history_trimmed`: the first lost offset.", **OFFSET),
            "to_offset": _opt("`history_trimmed`: the last lost offset.", **OFFSET),
        },
    ),
    FrameDef(
        "job.accepted",
        "job.accepted",
        SERVER,
        "Reply to `job.submit`.",
        {
            "job_id": _JOB_ID,
            "job": _s("The job's name.", type="string"),
        },
    ),
    FrameDef(
        "job.progress",
        "job.progress",
        SERVER,
        "A job's progress (pushed to its submitter).",
        {
            "job_id": _JOB_ID,
            "progress": _s("Fraction done.", type="number", minimum=0, maximum=1),
            "message": _s("What it is doing.", type=["string", "null"]),
        },
    ),
    FrameDef(
        "job.output",
        "job.output",
        SERVER,
        "One output of a job.",
        {
            "job_id": _JOB_ID,
            "data": _s("The output (any JSON)."),
        },
    ),
    FrameDef(
        "job.output.items",
        "job.output",
        SERVER,
        "Consecutive outputs of a job, coalesced (2 to 512, in order).",
        {
            "job_id": _JOB_ID,
            "items": _s(
                "The outputs, in the order emitted.", type="array", minItems=2, maxItems=512
            ),
        },
    ),
    FrameDef(
        "job.result",
        "job.result",
        SERVER,
        "A job's result (its last event).",
        {
            "job_id": _JOB_ID,
            "result": _s("The job's return value (any JSON)."),
        },
    ),
    FrameDef(
        "job.failed",
        "job.failed",
        SERVER,
        "A job failed (its last event).",
        {
            "job_id": _JOB_ID,
            "error": Field({"description": "The exception.", **ERROR_DETAIL}),
            "state": _s("How it ended.", type="string", enum=["failed", "timed_out"]),
        },
    ),
    FrameDef(
        "job.cancelled",
        "job.cancelled",
        SERVER,
        "A job was cancelled (reply to `job.cancel`, and its last event).",
        {
            "job_id": _JOB_ID,
            "state": _s("`cancelled`.", type="string", const="cancelled"),
            "error": Field(
                {"description": "`{type: Cancelled, message}`.", **ERROR_DETAIL}, required=False
            ),
        },
    ),
    FrameDef(
        "upload.ready",
        "upload.ready",
        SERVER,
        "Reply to `upload.start`.",
        {
            "upload_id": _UPLOAD_ID,
            "offset": _s("Bytes already stored (> 0 when resuming).", **OFFSET),
            "chunk_size": _s(
                "The largest chunk the hub takes, in bytes.", type="integer", minimum=1
            ),
        },
    ),
    FrameDef(
        "upload.ack",
        "upload.ack",
        SERVER,
        "Reply to a binary chunk.",
        {
            "upload_id": _UPLOAD_ID,
            "offset": _s("Bytes stored so far.", **OFFSET),
        },
    ),
    FrameDef(
        "upload.complete",
        "upload.complete",
        SERVER,
        "Reply to `upload.finish`; the job's events follow.",
        {
            "upload_id": _UPLOAD_ID,
            "size": _s("The file's size in bytes.", type="integer", minimum=0),
            "sha256": _s("Its SHA-256, hex (checked).", type="string"),
            "job_id": _s("The job started on it, if any.", type=["string", "null"]),
        },
    ),
)


def by_key() -> dict[str, FrameDef]:
    """Every frame by its message key (keys are unique; a test checks it)."""
    return {frame.key: frame for frame in FRAMES}
