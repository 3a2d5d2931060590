from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import wirehub


def test_public_names_are_exported():
    for name in wirehub.__all__:
        assert getattr(wirehub, name) is not None, name


def test_every_module_declares_all():
    missing = []
    for info in pkgutil.walk_packages(wirehub.__path__, "wirehub."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            continue
        if not hasattr(module, "__all__"):
            missing.append(info.name)
            continue
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name} in __all__ but missing"
    assert missing == []


def test_core_imports_no_web_framework():
    code = (
        "import sys, wirehub.core.node, wirehub.core.rooms, wirehub.core.protocol;"
        "bad = [m for m in ('fastapi', 'starlette', 'uvicorn', 'redis', 'celery') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


#: Packages only the server needs; the client SDK must work without any of them.
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "prometheus_client", "jwt", "celery", "redis")


def test_the_client_loads_no_server_package():
    code = (
        "import sys, wirehub.client;"
        f"server = {SERVER_ONLY!r} + ('pydantic',);"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(server)),"
        " sorted(m for m in ('wirehub.web', 'wirehub.hub', 'wirehub.settings') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_the_top_level_package_imports_the_server_only_when_asked():
    code = (
        "import sys, wirehub;"
        f"before = sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_ONLY!r}));"
        "hub, app, settings = wirehub.Hub, wirehub.create_app, wirehub.Settings;"
        "print(before, hub.__module__, app.__module__, settings.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "wirehub.hub", "wirehub.web.app", "wirehub.settings"]
    assert set(wirehub.__all__) <= set(dir(wirehub))
