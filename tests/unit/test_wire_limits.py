"""The wire layer without sockets: the request head scanner, the settings, the uvicorn pin."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st

from wirehub.errors import ConfigError
from wirehub.server import wire_limits, ws_protocol
from wirehub.settings import load_settings
from wirehub.web.headscan import HeadScanner
from wirehub.web.uvicorn_protocols import HOOKS, SUPPORTED_UVICORN, uvicorn_version

ROOT = Path(__file__).resolve().parents[2]


def head(target: bytes = b"/ws", *headers: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def scan(data: bytes, step: int | None = None, **limits: int) -> tuple[HeadScanner, object]:
    scanner = HeadScanner(**limits)
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        refusal = scanner.feed(data[i : i + step])
        if refusal is not None:
            return scanner, refusal
    return scanner, None


# -- the head scanner ------------------------------------------------------------


def test_a_32_kib_token_in_the_query_or_a_header_passes_the_defaults():
    token = b"t" * 32 * 1024
    for data in (
        head(b"/ws?token=" + token, b"Host: x"),
        head(b"/ws", b"Authorization: Bearer " + token),
    ):
        scanner, refusal = scan(data, step=1000)
        assert refusal is None and scanner.done


def test_each_limit_names_its_status_as_soon_as_it_is_passed():
    _, refusal = scan(b"GET /" + b"a" * 2_000_000, step=4096, max_request_line=8192)
    assert refusal == (414, "request line longer than 8192 bytes", "uri_too_long")
    endless = head(b"/ws")[:-2] + b"X-Long: " + b"b" * 2_000_000
    scanner, refusal = scan(endless, step=4096, max_header_bytes=8192)
    assert refusal == (431, "request headers longer than 8192 bytes", "headers_too_large")
    assert scanner.received <= 8192 + 2 * 4096  # refused within a read of the limit
    _, refusal = scan(head(b"/", *(b"X-%d: 1" % i for i in range(101))))
    assert refusal == (431, "more than 100 request headers", "headers_too_large")
    _, refusal = scan(head(b"/", *(b"X-%d: 1" % i for i in range(100))))
    assert refusal is None


def test_limits_are_exact():
    line = b"GET /" + b"a" * 95 + b" HTTP/1.1"  # 109 bytes without the line end
    assert scan(line + b"\r\n\r\n", max_request_line=109)[1] is None
    assert scan(line + b"\r\n\r\n", max_request_line=108)[1][0] == 414
    headers = b"A: 1\r\nB: 2\r\n\r\n"  # 14 header bytes with the blank line
    assert scan(b"GET / HTTP/1.1\r\n" + headers, max_header_bytes=14)[1] is None
    assert scan(b"GET / HTTP/1.1\r\n" + headers, max_header_bytes=13)[1][0] == 431


def test_what_follows_the_head_in_the_same_read_is_not_counted():
    # The upgrade and the first WebSocket frames can come in one read.
    data = head(b"/ws", b"Host: x") + b"\x81\x85" + b"z" * 100_000
    scanner, refusal = scan(data, max_header_bytes=1024)
    assert refusal is None and scanner.done
    assert scanner.feed(b"more" * 10_000) is None


@given(
    st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b), max_size=30),
    st.integers(min_value=1, max_value=64),
)
def test_any_split_of_a_head_gives_the_same_verdict(values, step):
    headers = [b"X-" + bytes([65 + i % 26]) + b": " + v for i, v in enumerate(values)]
    data = head(b"/p", *headers)
    whole = scan(data, max_header_bytes=600, max_headers=20)
    split = scan(data, step=step, max_header_bytes=600, max_headers=20)
    assert (whole[1] is None) == (split[1] is None)
    if whole[1] is None:
        assert whole[0].done and split[0].done
    else:
        assert whole[1] == split[1]


# -- settings ----------------------------------------------------------------------


def test_head_bounds_are_settings_mapped_onto_the_wire_limits():
    settings = load_settings(
        None,
        server={"max_request_line": 2048, "max_headers": 20, "handshake_timeout": 3},
        limits={"rate": 10, "burst": 5, "queue_max_bytes": 4096},
    )
    limits = wire_limits(settings)
    assert (limits.max_request_line, limits.max_header_bytes, limits.max_headers) == (
        2048,
        65536,
        20,
    )
    assert (limits.handshake_timeout, limits.handshake_idle_timeout) == (3, 5.0)
    assert (limits.rate, limits.burst, limits.queue_max_bytes) == (10, 5, 4096)


def test_auto_is_the_wirehub_protocol():
    auto = ws_protocol(load_settings(None, server={"ws": "auto"}))
    default = ws_protocol(load_settings(None))
    assert auto.__name__ == default.__name__ == "RawSendProtocol"  # type: ignore[union-attr]


def test_wsproto_without_its_package_fails_at_load_naming_it(monkeypatch):
    # The test venv has wsproto; None in sys.modules is Python's own "not installed".
    monkeypatch.setitem(sys.modules, "wsproto", None)
    with pytest.raises(ConfigError) as info:
        load_settings(None, server={"ws": "wsproto"})
    assert "server.ws: 'wsproto' needs the wsproto package (pip install wsproto)" in str(info.value)


def test_serve_with_wsproto_missing_exits_2_with_one_line(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[server]\nws = "wsproto"\n')
    code = (
        "import sys; sys.modules['wsproto'] = None; "
        f"sys.argv = ['wirehub', 'serve', '--config', {str(config)!r}]; "
        "from wirehub.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "wsproto package" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# -- the uvicorn this module is written against -------------------------------------


def test_installed_uvicorn_is_in_the_supported_range_and_pinned():
    low, high = SUPPORTED_UVICORN
    assert low <= uvicorn_version() < high, (
        f"uvicorn {uvicorn.__version__} is outside {low}..{high}: "
        "review web/uvicorn_protocols.py against it, then move SUPPORTED_UVICORN and the pin"
    )
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("uvicorn"))
    bounds = re.findall(r"(>=|<)(\d+)\.(\d+)", pin)
    assert [(op, (int(a), int(b))) for op, a, b in bounds] == [(">=", low), ("<", high)], pin


@pytest.mark.parametrize(("cls", "name"), HOOKS, ids=lambda v: getattr(v, "__name__", v))
def test_every_hooked_method_still_exists(cls, name):
    hook = getattr(cls, name, None)
    # A property (websockets' ``state``) is overridden by its setter.
    assert callable(hook.fset if isinstance(hook, property) else hook), (
        f"{cls.__qualname__}.{name} is gone: see uvicorn_protocols.py"
    )
