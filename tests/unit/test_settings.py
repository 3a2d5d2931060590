from __future__ import annotations

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
