"""uvicorn's internals are used in web/uvicorn_protocols/ and nowhere else.

A uvicorn upgrade is then reviewed in one package: the rest of the tree may use
only uvicorn's public top level (``uvicorn.Config``, ``uvicorn.Server``,
``uvicorn.run``, ``uvicorn.__version__``) and ``Server``'s three flags.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest
import uvicorn

from wirehub.web.uvicorn_protocols import server_hooks

SRC = Path(__file__).resolve().parents[2] / "src" / "wirehub"
SEAM = SRC / "web" / "uvicorn_protocols"

#: What uvicorn exports at its top level (its ``__all__``) and its version.
PUBLIC = frozenset(uvicorn.__all__) | {"__version__"}
#: ``Server`` state HubServer may touch itself: the rest goes through server_hooks.
PUBLIC_STATE = frozenset({"config", "started", "should_exit", "force_exit"})
#: uvicorn's submodules, by dotted name (a string naming one is a reach inside too).
SUBMODULES = frozenset(
    m.name
    for m in pkgutil.walk_packages(uvicorn.__path__, prefix="uvicorn.", onerror=lambda _: None)
)


def _server_internals() -> frozenset[str]:
    """Names on a ``uvicorn.Server`` that are not its public API."""
    server = uvicorn.Server(uvicorn.Config(app=None))  # type: ignore[arg-type]
    names = set(vars(server)) | {"servers", "lifespan"}  # set by serve()
    names |= {n for n in dir(uvicorn.Server) if n.startswith("_") and not n.startswith("__")}
    return frozenset(names - PUBLIC_STATE)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if SEAM not in p.parents)


def reaches_inside(tree: ast.Module, internals: frozenset[str]) -> list[str]:
    """Where a module uses uvicorn beyond its public top level (line: what)."""
    found: list[str] = []
    imports_uvicorn = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "uvicorn":
                    imports_uvicorn = True
                elif alias.name.startswith("uvicorn."):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module.startswith("uvicorn."):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "uvicorn":
                imports_uvicorn = True
                for alias in node.names:
                    if alias.name not in PUBLIC:
                        found.append(f"{node.lineno}: from uvicorn import {alias.name}")
        elif isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id == "uvicorn" and node.attr not in PUBLIC:
                found.append(f"{node.lineno}: uvicorn.{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in SUBMODULES:
            found.append(f"{node.lineno}: {node.value!r}")
    if imports_uvicorn:
        # A module holding a uvicorn.Server (HubServer) keeps off its inner state.
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in internals:
                found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_no_module_outside_the_seam_reaches_into_uvicorn():
    internals = _server_internals()
    offences = {
        str(path.relative_to(SRC)): hits
        for path in _modules()
        if (hits := reaches_inside(ast.parse(path.read_text(), str(path)), internals))
    }
    assert offences == {}, (
        "uvicorn internals outside web/uvicorn_protocols/ (move them into server_hooks.py "
        f"or the protocol classes): {offences}"
    )


@pytest.mark.parametrize(
    ("source", "hit"),
    [
        ("import uvicorn.server", "import uvicorn.server"),
        (
            "from uvicorn.protocols.utils import get_path_with_query_string",
            "from uvicorn.protocols",
        ),
        ("from uvicorn import server", "from uvicorn import server"),
        ("import uvicorn\nx: uvicorn.server.ServerState", "uvicorn.server"),
        ("import sys\nsys.modules.get('uvicorn.server')", "'uvicorn.server'"),
        ("import uvicorn\nself._captured_signals.clear()", "._captured_signals"),
        ("import uvicorn\nself.server_state.connections", ".server_state"),
    ],
)
def test_the_check_sees_each_kind_of_reach(source, hit):
    hits = reaches_inside(ast.parse(source), _server_internals())
    assert any(hit in h for h in hits), hits


def test_public_use_passes_the_check():
    source = (
        "import uvicorn\n"
        "from uvicorn import Config, Server\n"
        "class S(uvicorn.Server):\n"
        "    def f(self):\n"
        "        self.should_exit = self.force_exit or self.started\n"
        "        return uvicorn.__version__, self.config, logging.getLogger('uvicorn.error')\n"
    )
    assert reaches_inside(ast.parse(source), _server_internals()) == []


def test_the_server_state_the_hooks_read_still_exists():
    server = uvicorn.Server(uvicorn.Config(app=None))  # type: ignore[arg-type]
    for name in server_hooks.SERVER_ATTRIBUTES:
        assert hasattr(server, name), f"uvicorn.Server().{name} is gone: see server_hooks.py"
    assert isinstance(server.server_state.connections, set)
    assert isinstance(server._captured_signals, list)
    assert server_hooks.websocket_transports(server) == []
    server_hooks.stop_listening(server)  # nothing listens yet: a no-op
