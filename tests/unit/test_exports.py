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
