"""Typed handlers and typed rooms: pydantic models on the wire, and their registry.

``@hub.on("chat.typing", model=Typing)`` validates a custom frame before its
handler runs; ``hub.room("orders:*", model=Order)`` (or ``[[rooms]] model =
"pkg.mod:Order"``) validates the ``data`` of every publish into matching rooms.
A frame or message that does not validate is refused with ``bad_request`` and
one ``errors`` entry ``{field, message}`` per bad field — the shape the HTTP API
already gives a request FastAPI cannot validate (docs/protocol.md), so a client
reads one list whichever way it talked to the hub.

:class:`Schemas` is the registry of both (``hub.schemas``): the AsyncAPI
document is built from it, and the node asks it, at the one spot every publish
enters (:meth:`wirehub.core.node.Node.check_data`), which model a room has. The
answer is cached per room name, so a publish costs one dict lookup, never a
pattern scan, and a hub without typed rooms does not ask at all.

Free of any web framework: the core and the CLI import it.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ValidationError

from wirehub.errors import BadRequest

if TYPE_CHECKING:
    from wirehub.core.connection import Connection

__all__ = [
    "MAX_FIELD_ERRORS",
    "Schemas",
    "TypedHandler",
    "TypedRoom",
    "field_errors",
    "import_model",
    "typed_handler",
    "validation_error",
]

#: Bad fields listed in one error (a frame with 10 000 bad list items gets 20
#: entries and ``"errors_truncated": true``): an error is bounded like any frame.
MAX_FIELD_ERRORS = 20
#: Longest ``field`` path reported (a path holds the client's own dict keys).
MAX_PATH = 200

#: ``type`` of a typed handler's reply when its reply has none of its own.
REPLY_SUFFIX = ".ok"

Frame = dict[str, Any]
#: What a typed handler gets: the connection and the validated model instance.
TypedHandlerFn = Callable[..., "Awaitable[Frame | BaseModel | None] | Frame | BaseModel | None"]
#: The ``(connection, frame)`` handler the node calls (``wirehub.core.node.Handler``).
NodeHandler = Callable[["Connection", Frame], "Awaitable[Frame | None] | Frame | None"]

#: Frame keys that belong to the envelope, not to the model of a custom frame.
_ENVELOPE = ("type", "ref")


@dataclass(frozen=True)
class TypedHandler:
    """One custom frame type registered with ``@hub.on``."""

    kind: str  # frame type, e.g. "chat.typing"
    model: type[BaseModel] | None  # None: untyped custom handler
    reply_model: type[BaseModel] | None
    summary: str | None  # first line of the handler's docstring

    @property
    def reply_type(self) -> str:
        """The reply frame's ``type`` when the reply does not set one: ``<kind>.ok``."""
        return self.kind + REPLY_SUFFIX


@dataclass(frozen=True)
class TypedRoom:
    """Rooms whose name matches ``pattern`` (fnmatch, case-sensitive) carry ``model`` data."""

    pattern: str  # e.g. "orders:*"
    model: type[BaseModel]
    summary: str | None
    #: Where it was declared: ``"hub.room"`` or ``"rooms[<i>].model"`` (a setting).
    source: str = "hub.room"


class Schemas:
    """Every typed (and untyped) custom handler and every typed room of one hub.

    ``rooms`` are in precedence order, as ``[[rooms]]`` policies are: the
    ``[[rooms]]`` entries with a ``model`` in file order, then ``hub.room()``
    calls in call order; the first pattern that matches a room gives its model.
    A ``[[rooms]]`` entry without a model does not hide a later typed pattern
    (it types nothing). System rooms (``$...``) are never typed, whatever the
    pattern (``*`` too). Register through :meth:`add_room` (it resets the cache).
    """

    def __init__(self, *, cache_size: int = 10_000) -> None:
        self.handlers: dict[str, TypedHandler] = {}
        self.rooms: list[TypedRoom] = []
        #: room name -> model (or None), oldest entry dropped first when full.
        self._cache: dict[str, type[BaseModel] | None] = {}
        self._cache_size = cache_size

    # -- registration ----------------------------------------------------------

    def add_handler(
        self,
        kind: str,
        handler: Callable[..., Any],
        model: type[BaseModel] | None = None,
        reply_model: type[BaseModel] | None = None,
    ) -> TypedHandler:
        for name, cls in (("model", model), ("reply_model", reply_model)):
            if cls is not None and not _is_model(cls):
                raise TypeError(f"{name} of '{kind}' must be a pydantic model class, got {cls!r}")
        entry = TypedHandler(kind, model, reply_model, _first_line(inspect.getdoc(handler)))
        self.handlers[kind] = entry
        return entry

    def add_room(
        self,
        pattern: str,
        model: type[BaseModel],
        summary: str | None = None,
        *,
        source: str = "hub.room",
    ) -> TypedRoom:
        """Type the rooms matching ``pattern``; a pattern may be typed once."""
        if not _is_model(model):
            raise TypeError(
                f"model of rooms '{pattern}' must be a pydantic model class, got {model!r}"
            )
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("a room pattern must be a non-empty string")
        if pattern.startswith("$"):
            raise ValueError(
                f"'{pattern}': system rooms ($...) carry the hub's events, not a model"
            )
        for room in self.rooms:
            if room.pattern == pattern:
                raise ValueError(
                    f"rooms '{pattern}' already have the model {room.model.__name__} "
                    f"(from {room.source})"
                )
        entry = TypedRoom(pattern, model, summary or _model_summary(model), source)
        self.rooms.append(entry)
        self._cache.clear()
        return entry

    # -- lookups -----------------------------------------------------------------

    def room_model(self, room: str) -> type[BaseModel] | None:
        """The model of ``room``'s data, or None; matched once per room name, then cached."""
        if not self.rooms or room[:1] == "$":
            return None  # system rooms carry the hub's own events, never a model
        try:
            return self._cache[room]
        except KeyError:
            pass
        model = next((r.model for r in self.rooms if fnmatch.fnmatchcase(room, r.pattern)), None)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[room] = model
        return model

    def check_data(self, room: str, data: Any) -> Any:
        """``data`` as delivered into ``room``: validated and re-serialised by its model.

        What members receive is ``model.model_dump(mode="json", by_alias=True)`` of
        the validated instance (defaults filled in, values coerced), so every
        message of a typed room has its model's shape. Rooms without a model get
        ``data`` back untouched. Raises :class:`~wirehub.errors.BadRequest`
        (``errors`` per field, paths under ``data``; 422 over HTTP).
        """
        model = self.room_model(room)
        if model is None:
            return data
        try:
            value = model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(
                f"invalid data for room '{room}' ({model.__name__})",
                exc,
                prefix=("data",),
                room=room,
            ) from None
        return value.model_dump(mode="json", by_alias=True)

    @property
    def typed_rooms(self) -> bool:
        """Whether any room has a model (the node skips the check entirely otherwise)."""
        return bool(self.rooms)


# -- handlers ----------------------------------------------------------------------


def typed_handler(entry: TypedHandler, handler: TypedHandlerFn) -> NodeHandler:
    """The node handler for ``handler``: validate the frame, call it, shape its reply.

    With a ``model`` the handler is called as ``handler(conn, message)`` with the
    validated instance (the frame minus ``type`` and ``ref``); without one as
    today, ``handler(conn, frame)``. Its reply may be a dict (sent as is), a
    pydantic instance (dumped; ``type`` is ``<kind>.ok`` unless the model has a
    ``type`` field) or None (nothing sent); with a ``reply_model`` a dict or
    instance is validated by it first, and a reply that does not validate is
    the hub's fault, answered ``internal`` and logged by the node.
    """
    model, reply_model = entry.model, entry.reply_model
    if model is None and reply_model is None:
        return cast(NodeHandler, handler)  # exactly today's behaviour, no wrapper

    def message(frame: Frame) -> Any:
        if model is None:
            return frame
        body = {k: v for k, v in frame.items() if k not in _ENVELOPE}
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise validation_error(f"invalid {entry.kind} ({model.__name__})", exc) from None

    def reply(result: Any) -> Frame | None:
        if result is None:
            return None
        if reply_model is not None:
            result = _as_reply_model(reply_model, result, entry.kind)
        if isinstance(result, BaseModel):
            return {"type": entry.reply_type, **result.model_dump(mode="json", by_alias=True)}
        if isinstance(result, dict):
            return result
        raise TypeError(f"handler of '{entry.kind}' returned {type(result).__name__}, not a dict")

    if inspect.iscoroutinefunction(handler):

        async def run_async(conn: Connection, frame: Frame) -> Frame | None:
            return reply(await handler(conn, message(frame)))

        return run_async

    def run(conn: Connection, frame: Frame) -> Frame | None:
        return reply(handler(conn, message(frame)))

    return run


def _as_reply_model(reply_model: type[BaseModel], result: Any, kind: str) -> BaseModel:
    if isinstance(result, reply_model):
        return result
    if isinstance(result, BaseModel):
        result = result.model_dump()
    try:
        return reply_model.model_validate(result)
    except ValidationError as exc:
        # The server's own reply is wrong: not the client's error to read.
        raise RuntimeError(
            f"reply of '{kind}' does not match {reply_model.__name__}: {exc}"
        ) from None


# -- errors ------------------------------------------------------------------------


def field_errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """One ``{field, message}`` per bad field (dotted path, pydantic's reason), bounded."""
    out = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_FIELD_ERRORS]:
        path = ".".join(str(part) for part in (*prefix, *error["loc"]))
        out.append({"field": path[:MAX_PATH] or "(frame)", "message": error["msg"]})
    return out


def validation_error(
    what: str, exc: ValidationError, *, prefix: tuple[str, ...] = (), **fields: Any
) -> BadRequest:
    """The ``bad_request`` for a failed validation: the first reasons in the message,
    every field (up to :data:`MAX_FIELD_ERRORS`) in ``errors``; HTTP status 422."""
    errors = field_errors(exc, prefix)
    shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    more = exc.error_count() - 3
    text = f"{what}: {shown}" + (f" (and {more} more)" if more > 0 else "")
    extra: dict[str, Any] = {"errors": errors, **fields}
    if exc.error_count() > MAX_FIELD_ERRORS:
        extra["errors_truncated"] = True
    error = BadRequest(text, **extra)
    error.http_status = 422  # as a request FastAPI cannot validate
    return error


# -- import strings ----------------------------------------------------------------


def import_model(spec: str) -> type[BaseModel]:
    """Resolve ``"package.module:Model"`` to a pydantic model class.

    Raises ValueError saying what is wrong (the settings report it under the
    key that named it, e.g. ``rooms.0.model``).
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"'{spec}' is not an import string 'package.module:Model'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failing as it loads
        raise ValueError(f"cannot import module '{module_name}' of '{spec}': {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"'{spec}': '{module_name}' has no attribute '{attr}'") from None
    if not _is_model(obj):
        raise ValueError(f"'{spec}' is not a pydantic model class (it is {obj!r})")
    return obj  # type: ignore[no-any-return]


def _is_model(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _first_line(doc: str | None) -> str | None:
    if not doc:
        return None
    line = doc.strip().splitlines()[0].strip()
    return line or None


def _model_summary(model: type[BaseModel]) -> str | None:
    # The model's own docstring, not BaseModel's (which inspect.getdoc would inherit).
    return _first_line(model.__dict__.get("__doc__"))
