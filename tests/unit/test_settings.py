from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wirehub.errors import ConfigError
from wirehub.settings import load_settings


def test_defaults_are_a_loopback_demo():
    settings = load_settings()
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8000
    assert settings.server.ws_per_message_deflate is False
    assert settings.limits.max_frame == 65536


def test_toml_then_env_overrides(tmp_path, monkeypatch):
    config = tmp_path / "hub.toml"
    config.write_text(
        '[server]\nport = 9100\n[limits]\nmax_frame = 1000\n[[rooms]]\npattern = "feed:*"\npresence_events = false\n'
    )
    monkeypatch.setenv("WIREHUB_LIMITS__MAX_FRAME", "2048")
    monkeypatch.setenv("WIREHUB_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = load_settings(config)
    assert settings.server.port == 9100
    assert settings.limits.max_frame == 2048  # the environment wins
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.rooms[0].pattern == "feed:*" and settings.rooms[0].presence_events is False


def test_invalid_values_name_the_key_and_the_expectation(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nport = "high"\ncolour = "red"\n[limits]\nmax_frame = 10\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    text = str(info.value)
    assert f"invalid configuration in {config}" in text
    assert "server.port: Input should be a valid integer" in text and "(got 'high')" in text
    assert "server.colour: unknown key" in text
    assert "limits.max_frame: Input should be greater than or equal to 256 (got 10)" in text


def test_broken_toml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_cli_reports_invalid_config_and_exits_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\nqueue_max_messages = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "wirehub", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "limits.queue_max_messages: Input should be greater than or equal to 1" in result.stderr


# -- WIREHUB_* variables must name a setting (issue 14) ------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("WIREHUB_SERVR__PORT", "no setting 'servr' (did you mean WIREHUB_SERVER__PORT?)"),
        ("WIREHUB_PORT", "no setting 'port' (did you mean WIREHUB_SERVER__PORT?)"),
        (
            "WIREHUB_LIMITS__MAX_FRAMES",
            "no setting 'max_frames' in 'limits' (did you mean WIREHUB_LIMITS__MAX_FRAME?)",
        ),
        ("WIREHUB_SERVER__PORT__X", "'server.port' is one setting"),
        ("WIREHUB_BRIDGES__0__PORT", "'bridges' is one setting"),
        ("wirehub_colour", "no setting 'colour'"),
    ],
)
def test_an_unknown_environment_variable_is_refused_by_name(monkeypatch, name, problem):
    monkeypatch.setenv(name, "8106")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("invalid environment: WIREHUB_* variables must name a setting")
    assert f"{name}: {problem}" in text


def test_known_and_allow_listed_variables_pass(monkeypatch):
    for name, value in {
        "WIREHUB_SERVER__PORT": "8107",
        "WIREHUB_REDIS__PREFIX": "x",
        "WIREHUB_ROOMS": '[{"pattern": "feed:*"}]',
        "wirehub_limits__max_frame": "4096",  # names match case-insensitively
        "WIREHUB_TEST_TIMEOUT_FACTOR": "3",  # the test harness
        "WIREHUB_CHROMIUM": "/usr/bin/chromium",  # the browser tests
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.server.port == 8107 and settings.limits.max_frame == 4096
    assert settings.redis.prefix == "x" and settings.rooms[0].pattern == "feed:*"


def test_a_bad_value_from_the_environment_names_its_variable(monkeypatch):
    monkeypatch.setenv("WIREHUB_SERVER__PORT", "high")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "server.port: Input should be a valid integer" in str(info.value)
    assert "(got 'high') (from WIREHUB_SERVER__PORT)" in str(info.value)


@pytest.mark.parametrize("typo", ["WIREHUB_SERVR__PORT=8106", "WIREHUB_PORT=8107"])
def test_cli_exits_2_naming_a_mistyped_variable(typo):
    name, _, value = typo.partition("=")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIREHUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "wirehub", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, name: value},
    )
    assert result.returncode == 2, result.stderr
    assert f"{name}: no setting" in result.stderr
    assert "WIREHUB_SERVER__PORT?" in result.stderr
    assert "Uvicorn running" not in result.stderr + result.stdout


# -- configuration errors name the key and the problem only -------------------------


def test_a_check_across_sections_does_not_dump_the_input(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[jobs]\nrunner = "celery"\nmodules = ["a", "b"]\n[server]\nport = 9000\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    lines = str(info.value).splitlines()
    assert lines == [
        f"invalid configuration in {config}:",
        "  jobs.runner = 'celery' needs redis_url",
    ]


def test_a_section_check_names_the_section_without_its_content(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text("[redis]\nnode_ttl = 1\nnode_heartbeat = 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(info.value).splitlines()[1:] == [
        "  redis: node_ttl must be longer than node_heartbeat"
    ]
