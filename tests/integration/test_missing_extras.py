"""A missing optional package is one line naming the extra, not a traceback (issue 14).

The test venv has every extra installed, so each case runs the real CLI in a
subprocess where Python's own switch for "this module is not there" is set
(``sys.modules[name] = None`` makes ``import name`` raise ImportError, exactly
as an absent package does). scripts/check-extras proves each extra alone works
in a fresh venv; this proves the message when one is missing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from support import TIMEOUT
from wirehub.errors import ConfigError, WirehubError
from wirehub.extras import require

CELERY_LINE = "wirehub: the Celery runner needs the 'celery' extra: pip install 'wirehub[celery]'"
REDIS_LINE = (
    "wirehub: the Redis broker (redis_url) needs the 'redis' extra: pip install 'wirehub[redis]'"
)
WORKER_LINE = "wirehub: wirehub worker needs the 'celery' extra: pip install 'wirehub[celery]'"


async def cli_without(missing: str, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``wirehub <args>`` with the module ``missing`` unimportable: (exit code, stderr)."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None; "
        f"sys.argv = ['wirehub', *{list(args)!r}]; "
        "from wirehub.cli import main; main()"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
        env={**os.environ, **env},
    )
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("missing", "command", "line"),
    [
        ("celery", "serve", CELERY_LINE),
        # kombu 5.7's Redis transport imports packaging without declaring it.
        ("packaging", "serve", CELERY_LINE),
        ("celery", "worker", WORKER_LINE),
    ],
)
async def test_celery_runner_without_its_extra_is_one_line_and_exit_1(
    tmp_path, missing, command, line
):
    config = tmp_path / "hub.toml"
    config.write_text('[jobs]\nrunner = "celery"\n')
    # Nothing listens there: the error must come before any connection attempt.
    env = {"WIREHUB_REDIS_URL": "redis://127.0.0.1:9/0"}
    code, stderr = await cli_without(missing, command, "--config", str(config), env=env)
    assert code == 1, stderr
    assert stderr.strip() == line
    assert "Traceback" not in stderr


async def test_redis_url_without_redis_is_one_line_and_exit_1():
    code, stderr = await cli_without(
        "redis", "serve", "--port", "0", env={"WIREHUB_REDIS_URL": "redis://127.0.0.1:9/0"}
    )
    assert code == 1, stderr
    assert stderr.strip() == REDIS_LINE


def test_library_users_get_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError) as info:
        require("redis", "the Redis broker (redis_url)")
    error = info.value
    assert isinstance(error, WirehubError) and error.code == "config_error"
    assert str(error) == REDIS_LINE.removeprefix("wirehub: ")
    assert error.fields == {"extra": "redis", "missing": "redis"}


def test_an_installed_extra_passes():
    require("celery", "the Celery runner")
    require("redis", "the Redis broker (redis_url)")
