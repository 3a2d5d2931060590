"""A service from a config file and one built in code read commands and signals alike.

``services/spec.py`` owns the parsing (``split_command``, ``parse_signal``); the
``[[services]]`` validators in settings call it. A difference between the two would
mean a program that runs from ``hub.toml`` but not from ``ServiceSpec.from_dict``.
"""

from __future__ import annotations

import signal

import pytest

from wirehub.errors import ConfigError
from wirehub.services.spec import ServiceSpec, parse_signal, split_command
from wirehub.settings import load_settings


@pytest.mark.parametrize(
    ("entry", "argv", "stop"),
    [
        ({"command": "prog --name 'two words'"}, ["prog", "--name", "two words"], signal.SIGTERM),
        ({"command": ["prog", "a b"], "stop_signal": "int"}, ["prog", "a b"], signal.SIGINT),
        ({"command": "a | b", "shell": True, "stop_signal": "sighup"}, ["a | b"], signal.SIGHUP),
    ],
)
def test_settings_and_spec_read_a_service_the_same_way(entry, argv, stop):
    from_code = ServiceSpec.from_dict({"name": "svc", **entry})
    configured = load_settings(None, services=[{"name": "svc", **entry}]).services[0]
    from_config = ServiceSpec.from_dict(configured.model_dump())
    assert list(from_code.command) == list(from_config.command) == configured.command == argv
    assert from_code.stop_signal == from_config.stop_signal == stop
    assert from_code.argv == from_config.argv


def test_a_bad_signal_reads_the_same_from_code_and_from_config():
    with pytest.raises(ValueError, match=r"^stop_signal: unknown signal 'SIGNOPE'$"):
        ServiceSpec.from_dict({"name": "svc", "command": "x", "stop_signal": "SIGNOPE"})
    with pytest.raises(ConfigError, match=r"stop_signal: unknown signal 'SIGNOPE'"):
        load_settings(None, services=[{"name": "svc", "command": "x", "stop_signal": "SIGNOPE"}])


def test_the_parsers_on_their_own():
    assert split_command("a 'b c'") == ["a", "b c"]
    assert split_command("a 'b c'", shell=True) == ["a 'b c'"]
    assert split_command(("a", "b")) == ["a", "b"]
    assert parse_signal("TERM") is parse_signal("sigterm") is parse_signal(15) is signal.SIGTERM
    with pytest.raises(ValueError, match="unknown signal 999"):
        parse_signal(999)
