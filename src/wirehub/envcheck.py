"""Catch typos in ``WIREHUB_*`` environment variables, as unknown TOML keys are caught.

pydantic-settings reads only the variables that name a setting and ignores the
rest, so ``WIREHUB_SERVR__PORT=8106`` or ``WIREHUB_PORT=8107`` would start a hub
on the default port without a word. :func:`unknown_variables` walks each
``WIREHUB_*`` name through the settings model (``__`` separates the levels) and
reports every one that names nothing, with the closest real name when there is
one. Variables that wirehub's tools read outside the settings are allowed by
name (:data:`NOT_SETTINGS`).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

__all__ = ["NOT_SETTINGS", "PREFIX", "unknown_variables"]

PREFIX = "WIREHUB_"
NESTED = "__"

#: ``WIREHUB_*`` variables that are not settings (docs/config.md, "Environment variables"):
#: the test harness' timeout multiplier and the browser the browser tests drive.
NOT_SETTINGS = frozenset({"WIREHUB_TEST_TIMEOUT_FACTOR", "WIREHUB_CHROMIUM"})


def unknown_variables(
    model: type[BaseModel], environ: Mapping[str, str], *, allowed: Iterable[str] = NOT_SETTINGS
) -> list[str]:
    """One line per ``WIREHUB_*`` variable in ``environ`` that names no setting of ``model``."""
    allowed = {name.upper() for name in allowed}
    problems = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith(PREFIX) or upper in allowed:
            continue
        problem = _check(model, upper[len(PREFIX) :].lower().split(NESTED))
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _check(model: type[BaseModel], parts: list[str]) -> str | None:
    path: list[str] = []
    current: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        if current is None:  # the previous part is a value, not a section
            key = ".".join(path)
            return f"'{key}' is one setting (its whole value; JSON for a list): no key '{part}'"
        fields = current.model_fields
        if part not in fields:
            return _no_such(model, path, part, parts[i + 1 :])
        path.append(part)
        annotation = fields[part].annotation
        if _is_mapping(annotation):
            return None  # a dict setting: deeper parts are its keys, validated by the model
        current = _section(annotation)
    return None


def _no_such(model: type[BaseModel], path: list[str], part: str, rest: list[str]) -> str:
    where = ".".join(path)
    message = f"no setting '{part}' in '{where}'" if where else f"no setting '{part}'"
    guesses = difflib.get_close_matches(part, _fields_at(model, path), n=1, cutoff=0.75)
    if guesses:
        return f"{message} (did you mean {_env_name([*path, guesses[0], *rest])}?)"
    if not path and not rest:
        # WIREHUB_PORT: the key exists one level down (WIREHUB_SERVER__PORT).
        for section, field in model.model_fields.items():
            nested = _section(field.annotation)
            if nested is not None and part in nested.model_fields:
                return f"{message} (did you mean {_env_name([section, part])}?)"
    return message


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in path:
        assert current is not None
        current = _section(current.model_fields[part].annotation)
    return list(current.model_fields) if current is not None else []


def _env_name(path: list[str]) -> str:
    return PREFIX + NESTED.join(path).upper()


def _members(annotation: object) -> tuple[object, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _section(annotation: object) -> type[BaseModel] | None:
    """The settings model a field holds (``X`` or ``X | None``), else None (a value)."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _is_mapping(annotation: object) -> bool:
    return any(
        typing.get_origin(member) in (dict, Mapping) or member is dict
        for member in _members(annotation)
    )
