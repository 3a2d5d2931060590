"""The docs say what the code does: every setting and default, every HTTP route (issue 14).

docs/config.md's tables are parsed (``| `key` | `default` | meaning |``) and
each default is compared with the ``Settings`` model; every field of every
section must be in a table. Every ``METHOD /path`` quoted in docs/ and the
README must be a route of the standalone app.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from wirehub.settings import (
    AuthSettings,
    BridgeSettings,
    HeartbeatSettings,
    JobsSettings,
    LimitsSettings,
    RedisSettings,
    RoomSettings,
    ServerSettings,
    ServiceSettings,
    Settings,
    UploadsSettings,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs" / "config.md"

#: docs/config.md heading → the model its table documents.
SECTIONS: dict[str, type[BaseModel]] = {
    "Top level": Settings,
    "`[server]`": ServerSettings,
    "`[limits]`": LimitsSettings,
    "`[heartbeat]`": HeartbeatSettings,
    "`[history]` and `[[rooms]]`": RoomSettings,
    "`[shutdown]`": Settings.model_fields["shutdown"].annotation,  # type: ignore[dict-item]
    "Bridges": BridgeSettings,
    "Services": ServiceSettings,
    "Redis": RedisSettings,
    "Jobs": JobsSettings,
    "Uploads": UploadsSettings,
    "Auth": AuthSettings,
}
#: Top-level fields documented in their own section rather than the "Top level" table.
SECTION_FIELDS = {"server", "limits", "heartbeat", "history", "rooms", "shutdown", "bridges"}
SECTION_FIELDS |= {"redis", "jobs", "uploads", "services", "auth"}
#: Words the tables use for "no value" / "no default".
NONE_WORDS = ("unset", "\u2013", "-", "none", "auto")


def config_tables() -> dict[str, list[tuple[str, str]]]:
    """Heading → [(key cell, default cell)] of the first table with a `default` column."""
    tables: dict[str, list[tuple[str, str]]] = {}
    heading = None
    columns: list[str] | None = None
    for line in CONFIG.read_text().splitlines():
        if line.startswith("## "):
            heading, columns = line[3:].strip(), None
            continue
        if heading is None or not line.startswith("|"):
            columns = None if not line.startswith("|") else columns
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            columns = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        if columns[:2] == ["key", "default"] and heading in SECTIONS:
            tables.setdefault(heading, []).append((cells[0], cells[1]))
    return tables


def field_at(model: type[BaseModel], dotted: str) -> Any:
    """The FieldInfo of ``restart.policy`` style keys (a nested model's field)."""
    *outer, last = dotted.split(".")
    for part in outer:
        annotation = model.model_fields[part].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel), dotted
        model = annotation
    return model.model_fields[last]


def documented() -> list[tuple[str, str, str]]:
    """(heading, key, default cell) for every key of every table (``a`, `b`` rows split)."""
    rows = []
    for heading, entries in config_tables().items():
        for key_cell, default_cell in entries:
            keys = re.findall(r"`([^`]+)`", key_cell)
            defaults = [d.strip() for d in default_cell.split(" / ")]
            if len(defaults) != len(keys):
                defaults = defaults * len(keys) if len(defaults) == 1 else defaults
            rows.extend((heading, k, d) for k, d in zip(keys, defaults, strict=True))
    return rows


def _empty(default: Any) -> bool:
    """No value: None, required, or a section whose every key is unset (services' ``ready``)."""
    if isinstance(default, BaseModel):
        return all(v is None for v in default.model_dump().values())
    return default is None or default is PydanticUndefined


def expected(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, tuple):
        return list(value)
    return value


@pytest.mark.parametrize(("heading", "key", "default"), documented())
def test_each_documented_default_is_the_code_default(heading, key, default):
    field = field_at(SECTIONS[heading], key)
    literal = re.match(r"`([^`]*)`", default)  # "`[]` (env)": the value, then a note
    if default == "required":
        assert field.is_required(), f"{heading} {key}: documented as required"
        return
    if literal is None:
        # Words: "unset", "none", "auto", a dash, or a description of a computed
        # default ("hub's cwd"): no value of its own.
        if default.lower().startswith(NONE_WORDS):
            assert _empty(field.default), (
                f"{heading} {key}: documented as {default!r}, code default {field.default!r}"
            )
        else:
            assert field.default is None, f"{heading} {key}: {default!r} vs {field.default!r}"
        return
    text = literal.group(1)
    if text.startswith(("$", "[history]", "tcp:")) or "<" in text:
        assert field.default is None, f"{heading} {key}: computed default, code {field.default!r}"
        return
    value = tomllib.loads(f"v = {text}")["v"]
    code = expected(field.get_default(call_default_factory=True))
    assert value == code, f"{heading} `{key}`: docs say {text}, the code says {code!r}"


@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_every_setting_is_documented(heading):
    model = SECTIONS[heading]
    keys = {key for h, key, _ in documented() if h == heading}
    fields = set(model.model_fields)
    if model is Settings:
        fields -= SECTION_FIELDS
    # A nested section (services' `ready`, `restart`) is documented by its keys.
    missing = {f for f in fields if f not in keys and not any(k.startswith(f + ".") for k in keys)}
    assert not missing, f"docs/config.md, {heading}: no row for {sorted(missing)}"


def app_routes() -> set[tuple[str, str]]:
    from wirehub.web.app import create_app

    app = create_app(Settings(stats_interval=0))
    routes = set()
    for path, item in app.openapi()["paths"].items():
        for method in item:
            routes.add((method.upper(), re.sub(r"\{[^}]+\}", "{}", path)))
    return routes


def quoted_routes() -> list[tuple[str, str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in re.finditer(r"`(GET|POST|PUT|DELETE|PATCH) (/api/[^`\s?]*)", doc.read_text()):
            path = re.sub(r"\{[^}]+\}", "{}", match.group(2))
            found.append((doc.name, match.group(1), path))
    return found


def test_every_quoted_api_route_exists():
    routes = app_routes()
    quoted = quoted_routes()
    assert len(quoted) > 20
    wrong = [
        f"{doc}: {method} {path}" for doc, method, path in quoted if (method, path) not in routes
    ]
    assert not wrong, "routes quoted in the docs that the app does not have:\n" + "\n".join(wrong)


# -- docs/security.md, "Limits": the defaults in human units ---------------------------

SECURITY = ROOT / "docs" / "security.md"
UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
LISTS = {"[[rooms]]": RoomSettings, "[[bridges]]": BridgeSettings}


def security_limits() -> list[tuple[str, str, str]]:
    """(limit, setting cell, default cell) of the Limits table."""
    rows, inside = [], False
    for line in SECURITY.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Limits"
            continue
        if inside and line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] != "limit":
                rows.append((cells[0], cells[1], cells[2]))
    return rows


def setting_defaults(cell: str) -> list[Any]:
    """The code defaults of the settings a cell names (a bare name continues the last prefix)."""
    values, model, prefix = [], None, ""
    for token in re.findall(r"`([^`]+)`", cell):
        head, _, name = token.rpartition(" ")
        if head in LISTS:
            model, prefix = LISTS[head], ""
        elif "." in token:
            section, _, name = token.partition(".")
            model, prefix = Settings, section + "."
        assert model is not None, cell
        values.append(field_at(model, prefix + name).default)
    return values


def quoted_numbers(cell: str) -> list[float]:
    """``1 MiB + 4 KiB`` → 1052672; ``10 000`` → 10000; ``1000/s, burst 2000`` → 1000, 2000."""
    numbers: list[float] = []
    joined = False
    for match in re.finditer(r"(\+)|(\d+(?:[ \u202f]\d{3})*(?:\.\d+)?)\s*(KiB|MiB|GiB)?", cell):
        if match.group(1):
            joined = True
            continue
        value = float(re.sub(r"[ \u202f]", "", match.group(2))) * UNITS.get(match.group(3) or "", 1)
        if joined:
            numbers[-1] += value
            joined = False
        else:
            numbers.append(value)
    return numbers


@pytest.mark.parametrize(("limit", "setting", "default"), security_limits())
def test_security_limits_quote_the_code_defaults(limit, setting, default):
    code = [d for d in setting_defaults(setting) if isinstance(d, int | float)]
    if not code:
        return  # a list setting (allow_from): documented in words
    assert quoted_numbers(default)[: len(code)] == [float(d) for d in code], (
        f"docs/security.md, {limit}: {default!r} but the code defaults are {code}"
    )
