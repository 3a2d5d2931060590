"""``/asyncapi.json``: valid AsyncAPI 3.0.0, complete, and in agreement with docs/protocol.md.

The document is validated against the official JSON Schema of the npm package
``@asyncapi/specs`` (``scripts/ensure-asyncapi-specs`` installs it into .cache/;
``make test`` runs it first, and this module runs it when the file is missing).
With CI=true a schema that cannot be had fails the tests instead of skipping.

docs/protocol.md stays the prose authority: :func:`doc_frames` reads the frame
tables (``Client → server``, ``Server → client``, ``Jobs and uploads``) and the
fenced ``json`` examples, and the frames and fields found there must be exactly
those of the document.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from embedded_support import serve
from security_support import jwt_auth
from typed_models import Order, Typing, TypingAck
from wirehub import Hub, Settings
from wirehub.typed import Schemas
from wirehub.web.asyncapi.document import Server, build_document

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / ".cache/asyncapi-specs/node_modules/@asyncapi/specs/schemas/3.0.0.json"
PROTOCOL = ROOT / "docs/protocol.md"
ENVELOPE = {"type", "ref"}

Frames = dict[tuple[str, str], dict[str, bool]]  # (direction, type) -> field -> optional


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SPEC.exists():
        subprocess.run([str(ROOT / "scripts/ensure-asyncapi-specs")], check=False, timeout=300)
    if not SPEC.exists():
        why = f"{SPEC} is missing (run scripts/ensure-asyncapi-specs)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true: the AsyncAPI validation must run")
        pytest.skip(why)
    schema = json.loads(SPEC.read_text())
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.Draft7Validator(schema)


def problems(validator: jsonschema.Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message[:300]}" for e in validator.iter_errors(doc)]


def typed_schemas() -> Schemas:
    schemas = Schemas()

    async def typing(conn: object, message: Typing) -> TypingAck:
        """Tell a room that someone is typing."""
        return TypingAck(room=message.room, chars=len(message.text))

    schemas.add_handler("chat.typing", typing, Typing, TypingAck)
    schemas.add_handler("chat.raw", typing)
    schemas.add_room("orders:*", Order)
    return schemas


# -- docs/protocol.md ---------------------------------------------------------------


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``, header and rule dropped."""
    lines = text[text.index(heading) :].splitlines()[1:]
    rows: list[list[str]] = []
    for line in lines:
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    return rows[2:]


def _name(token: str) -> tuple[str, bool] | None:
    match = re.match(r"([A-Za-z_]\w*)(\?)?", token.strip())
    return (match.group(1), bool(match.group(2))) if match else None


def _cell_fields(cell: str) -> dict[str, bool]:
    """The top-level backticked names of a "fields" cell: not inside parentheses, and not
    a condition such as "with `since`:"; ``name?`` is optional, ``reason: "x"`` is ``reason``."""
    fields: dict[str, bool] = {}
    depth, i = 0, 0
    while i < len(cell):
        ch = cell[i]
        if ch == "`":
            end = cell.index("`", i + 1)
            token, i = cell[i + 1 : end], end + 1
            named = _name(token)
            if depth == 0 and named and not cell[i:].startswith(":"):
                fields[named[0]] = named[1]
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        i += 1
    return fields


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _merge(frames: Frames, key: tuple[str, str], fields: dict[str, bool]) -> None:
    known = frames.setdefault(key, {})
    for name, optional in fields.items():
        if name not in ENVELOPE:
            known[name] = known.get(name, True) and optional


def doc_frames(text: str) -> Frames:
    """Every frame docs/protocol.md names, by direction and type, with its fields."""
    frames: Frames = {}
    for heading, direction in (
        ("### Client → server", "client"),
        ("### Server → client", "server"),
    ):
        for cells in _table(text, heading):
            name = re.fullmatch(r"`([\w.]+)`", cells[0])
            if name:  # "custom types" and the like are not frames of their own
                _merge(frames, (direction, name.group(1)), _cell_fields(cells[1]))
    for cells in _table(text, "## Jobs and uploads"):
        for direction, cell in zip(("client", "server"), cells, strict=True):
            for name, body in re.findall(r"`([\w.]+) \{(.*?)\}`", cell):
                parsed = (_name(part) for part in _split_top(body))
                _merge(frames, (direction, name), dict(p for p in parsed if p))
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        for line in block.strip().splitlines():
            frame = json.loads(line)  # the server's frames, one per line
            _merge(frames, ("server", frame["type"]), dict.fromkeys(frame, False))
    return frames


def document_frames(doc: dict[str, Any]) -> Frames:
    """The same view of an AsyncAPI document: receive = client frames, send = server frames."""
    messages = doc["channels"]["hub"]["messages"]
    frames: Frames = {}
    for operation in doc["operations"].values():
        direction = "client" if operation["action"] == "receive" else "server"
        for ref in operation["messages"]:
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            if message.get("contentType", "application/json") != "application/json":
                continue  # the binary upload chunk: no JSON fields
            payload = message["payload"]
            required = set(payload.get("required", []))
            kind = payload["properties"]["type"]["const"]
            fields = {n: n not in required for n in payload["properties"]}
            _merge(frames, (direction, kind), fields)
    return frames


def disagreements(docs: Frames, document: Frames) -> list[str]:
    out = []
    for key in sorted(docs.keys() | document.keys()):
        if key not in document:
            out.append(f"{key} is in docs/protocol.md, not in the AsyncAPI document")
        elif key not in docs:
            out.append(f"{key} is in the AsyncAPI document, not in docs/protocol.md")
        elif docs[key].keys() != document[key].keys():
            out.append(
                f"{key}: docs/protocol.md has {sorted(docs[key])}, "
                f"the AsyncAPI document {sorted(document[key])}"
            )
        else:
            # A field docs/protocol.md marks `name?` is not required by the document.
            out += [
                f"{key}: '{name}' is optional in docs/protocol.md, required in the document"
                for name, optional in docs[key].items()
                if optional and not document[key][name]
            ]
    return out


def plain_document() -> dict[str, Any]:
    return build_document(None, server=Server("127.0.0.1:8000"), jwt=False)


# -- the tests ----------------------------------------------------------------------


async def test_the_live_document_is_valid_asyncapi_3(hub, validator):
    @hub.hub.on("chat.typing", model=Typing, reply_model=TypingAck)
    async def typing(conn: object, message: Typing) -> TypingAck:
        return TypingAck(room=message.room, chars=len(message.text))

    hub.hub.room("orders:*", model=Order)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert problems(validator, doc) == []
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["hub"] == {
        **doc["servers"]["hub"],
        "host": f"127.0.0.1:{hub.port}",
        "protocol": "ws",
    }
    assert doc["channels"]["hub"]["address"] == "/ws"
    messages = doc["channels"]["hub"]["messages"]
    assert set(messages["chat.typing"]["payload"]["properties"]) == {"type", "ref", "room", "text"}
    assert messages["chat.typing.ok"]["payload"]["required"] == ["type", "room", "chars"]
    order = messages["publish.room.orders__"]["payload"]["properties"]["data"]["$ref"]
    assert doc["components"]["schemas"][order.rsplit("/", 1)[1]]["required"] == ["id", "total"]
    assert "security" not in doc["servers"]["hub"]  # [auth] is off


def test_typed_handlers_rooms_and_jwt_are_valid_too(validator):
    doc = build_document(typed_schemas(), server=Server("hub.example:443", "wss"), jwt=True)
    assert problems(validator, doc) == []
    operations = doc["operations"]
    typing = operations["receive.chat.typing"]
    assert typing["summary"] == "Tell a room that someone is typing."
    assert typing["reply"]["messages"] == [
        {"$ref": "#/channels/hub/messages/chat.typing.ok"},
        {"$ref": "#/channels/hub/messages/error"},
    ]
    raw = doc["channels"]["hub"]["messages"]["chat.raw"]["payload"]
    assert raw["additionalProperties"] is True  # untyped: anything goes
    assert operations["receive.publish.room.orders__"]["reply"]["messages"][0] == {
        "$ref": "#/channels/hub/messages/ack"
    }
    assert operations["send.message.room.orders__"]["action"] == "send"
    # The handshake's auth, as in the OpenAPI document: bearer, or the token query parameter.
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["token"] == {**schemes["token"], "type": "httpApiKey", "in": "query"}
    assert doc["servers"]["hub"]["security"] == [
        {"$ref": "#/components/securitySchemes/bearer"},
        {"$ref": "#/components/securitySchemes/token"},
    ]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d.pop("asyncapi"),
        lambda d: d.update(asyncapi="3.0"),
        lambda d: d["operations"]["receive.join"].update(action="publish"),
        lambda d: d["channels"]["hub"]["messages"]["join"].update(bogus=1),
        lambda d: d["servers"]["hub"].pop("protocol"),
    ],
    ids=["no-asyncapi", "bad-version", "bad-action", "unknown-message-key", "no-protocol"],
)
def test_the_validation_rejects_a_broken_document(validator, break_it):
    doc = plain_document()
    assert problems(validator, doc) == []
    break_it(doc)
    assert problems(validator, doc) != []


async def test_the_bearer_schemes_follow_auth(hub_server, validator):
    running = await hub_server(auth=jwt_auth())
    async with httpx.AsyncClient(base_url=running.http) as http:
        doc = (await http.get("/asyncapi.json")).json()  # open, as /openapi.json is
        openapi = (await http.get("/openapi.json")).json()
    assert problems(validator, doc) == []
    assert "bearer" in openapi["components"]["securitySchemes"]  # the same name
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "token"}


async def test_the_document_is_cached_and_rebuilt_after_a_registration(hub):
    async with httpx.AsyncClient(base_url=hub.http) as http:
        first = (await http.get("/asyncapi.json")).json()
        again = (await http.get("/asyncapi.json")).json()
        assert first == again
        assert "chat.late" not in first["channels"]["hub"]["messages"]

        @hub.hub.on("chat.late", model=Typing)
        async def late(conn: object, message: Typing) -> None:
            """Registered after the first request."""

        later = (await http.get("/asyncapi.json")).json()
    assert (
        later["operations"]["receive.chat.late"]["summary"] == "Registered after the first request."
    )


async def test_one_hub_served_at_the_root_and_under_a_prefix_says_where_each_is(validator):
    # The same hub's router included twice: each document names its own path, and
    # the cached document of one never leaks its pathname into the other's.
    hub = Hub(Settings(stats_interval=0))
    app = FastAPI(lifespan=hub.lifespan, docs_url=None)
    app.include_router(hub.router)
    app.include_router(hub.router, prefix="/realtime")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        under = (await http.get("/realtime/asyncapi.json")).json()
        root = (await http.get("/asyncapi.json")).json()
        under_again = (await http.get("/realtime/asyncapi.json")).json()
        page = (await http.get("/realtime/asyncapi")).text
    # An app without docs: the page's OpenAPI link is hidden, not a dead /docs.
    assert 'href="/docs"' not in page and 'href="" hidden' in page
    assert problems(validator, under) == []
    assert under["servers"]["hub"]["pathname"] == "/realtime"
    assert "pathname" not in root["servers"]["hub"]
    assert under_again == under
    assert under["channels"] == root["channels"]


def test_docs_protocol_and_the_document_agree():
    docs = doc_frames(PROTOCOL.read_text())
    document = document_frames(plain_document())
    assert disagreements(docs, document) == []
    # The parser did read the tables, the job table and the json examples.
    assert docs[("client", "publish")] == {
        "room": False,
        "data": False,
        "echo": True,
        "idempotency_key": True,
    }
    assert docs[("server", "job.failed")].keys() == {"job_id", "error", "state"}
    assert docs[("server", "gap")].keys() == {
        "room",
        "reason",
        "offset",
        "from_offset",
        "to_offset",
    }
    assert len(docs) >= 30  # every frame of the tables (36 today)


def test_a_field_on_one_side_only_is_caught():
    text = PROTOCOL.read_text()
    row = "| `leave` | `room` | `left` |"
    assert row in text
    docs = doc_frames(text.replace(row, "| `leave` | `room`, `reason?` | `left` |"))
    assert disagreements(docs, document_frames(plain_document())) == [
        "('client', 'leave'): docs/protocol.md has ['reason', 'room'], "
        "the AsyncAPI document ['room']"
    ]
    doc = plain_document()
    doc["channels"]["hub"]["messages"]["ack"]["payload"]["properties"]["extra"] = {}
    assert disagreements(doc_frames(text), document_frames(doc)) == [
        "('server', 'ack'): docs/protocol.md has ['offset', 'room', 'to'], "
        "the AsyncAPI document ['extra', 'offset', 'room', 'to']"
    ]
    doc = plain_document()
    doc["channels"]["hub"]["messages"]["join"]["payload"]["required"].append("since")
    assert disagreements(doc_frames(text), document_frames(doc)) == [
        "('client', 'join'): 'since' is optional in docs/protocol.md, required in the document"
    ]


def test_the_cli_prints_the_document_of_an_app(validator, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [sys.executable, "-m", "wirehub", "asyncapi", "--app", "asyncapi_app:app"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert problems(validator, doc) == []
    assert {"chat.typing", "chat.typing.ok", "chat.raw", "publish.room.orders__"} <= set(
        doc["channels"]["hub"]["messages"]
    )

    bad = subprocess.run(
        [sys.executable, "-m", "wirehub", "asyncapi", "--app", "asyncapi_app"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert "is not 'module:attr'" in bad.stderr


def test_the_cli_with_a_config_file(validator, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(
        '[server]\nport = 8123\n\n[[rooms]]\npattern = "orders:*"\nmodel = "typed_models:Order"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "wirehub", "asyncapi", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert problems(validator, doc) == []
    assert doc["servers"]["hub"]["host"] == "127.0.0.1:8123"
    assert "message.room.orders__" in doc["channels"]["hub"]["messages"]


def _fits(doc: dict[str, Any], frame: dict[str, Any]) -> list[str]:
    """The messages of ``frame``'s type it fits, each read as closed (no field it does not
    list) unless it says ``additionalProperties``: a real frame with an undocumented field
    fits none."""
    fits = []
    for key, message in doc["channels"]["hub"]["messages"].items():
        payload = message["payload"]
        if payload.get("properties", {}).get("type", {}).get("const") != frame["type"]:
            continue
        closed = {"additionalProperties": False, **payload}
        if jsonschema.Draft7Validator(closed).is_valid(frame):
            fits.append(key)
    return fits


async def test_the_hub_s_real_frames_fit_the_document(hub, ws_client):
    async with httpx.AsyncClient(base_url=hub.http) as http:
        doc = (await http.get("/asyncapi.json")).json()
    alice = await ws_client(hub.ws, "alice")
    bob = await ws_client(hub.ws, "bob")
    seen = [alice.welcome]
    seen.append(await alice.request("join", room="r"))
    await hub.hub.publish("r", {"n": 1})
    seen.append(await alice.wait_for("message"))
    seen.append(await bob.request("join", room="r", since=0))
    seen.append(await bob.wait_for("message"))  # the replay
    seen.append(await alice.wait_for("presence", event="join"))
    seen.append(await bob.request("publish", room="r", data="hi", idempotency_key="k1"))
    seen.append(await alice.wait_for("message", data="hi"))
    seen.append(await alice.request("presence", room="r"))
    seen.append(await alice.request("direct", to="bob", data={"psst": True}))
    seen.append(await bob.wait_for("direct"))
    seen.append(await alice.request("ping"))
    seen.append(await alice.request("leave", room="nowhere"))  # an error
    seen.append(await alice.request("publish", room="$hub.stats", data=1))  # forbidden
    seen.append(await bob.request("leave", room="r"))
    seen.append(await alice.wait_for("presence", event="leave"))
    await hub.hub.broadcast({"all": 1})
    seen.append(await alice.wait_for("broadcast"))
    for frame in seen:
        assert len(_fits(doc, frame)) == 1, f"{frame} fits {_fits(doc, frame)}"
    assert {f["type"] for f in seen} == {
        "welcome",
        "joined",
        "message",
        "presence",
        "ack",
        "direct",
        "pong",
        "error",
        "left",
        "broadcast",
    }


async def test_job_and_upload_frames_fit_the_document(hub_server, ws_client, tmp_path):
    running = await hub_server(
        stats_interval=0,
        jobs={"modules": ["jobs_fixtures"], "concurrency": 2, "cancel_grace": 0.5},
        uploads={"dir": str(tmp_path / "spool")},
    )
    async with httpx.AsyncClient(base_url=running.http) as http:
        doc = (await http.get("/asyncapi.json")).json()
    alice = await ws_client(running.ws, "alice")
    seen = [await alice.request("job.submit", job="count", args={"n": 3})]
    job_id = seen[0]["job_id"]
    seen.append(await alice.wait_for("job.progress", job_id=job_id))
    seen.append(await alice.wait_for("job.output", job_id=job_id))
    seen.append(await alice.wait_for("job.result", job_id=job_id))
    failing = await alice.request("job.submit", job="boom")
    seen.append(await alice.wait_for("job.failed", job_id=failing["job_id"]))
    waiting = await alice.request("job.submit", job="until_cancelled")
    seen.append(await alice.request("job.cancel", job_id=waiting["job_id"]))
    data = b"x" * 1000
    sha = hashlib.sha256(data).hexdigest()
    ready = await alice.request(
        "upload.start", name="a.txt", size=len(data), sha256=sha, job="digest_upload"
    )
    await alice.send_raw(data)
    seen += [ready, await alice.wait_for("upload.ack", upload_id=ready["upload_id"])]
    seen.append(await alice.request("upload.finish", upload_id=ready["upload_id"]))
    for frame in seen:
        assert len(_fits(doc, frame)) == 1, f"{frame} fits {_fits(doc, frame)}"
    assert {f["type"] for f in seen} >= {
        "job.accepted",
        "job.progress",
        "job.output",
        "job.result",
        "job.failed",
        "job.cancelled",
        "upload.ready",
        "upload.ack",
        "upload.complete",
    }
