"""The shipped deploy/nginx.conf, run for real by Debian's nginx in front of test hubs.

The test does not write its own proxy config: it reads ``deploy/nginx.conf`` (the file
docker-compose.yml mounts into nginx's ``conf.d``), swaps in what only the deployment
decides — the upstream hubs' addresses, the listen port and, for one test, a shorter
``proxy_read_timeout`` — and includes it in a minimal main config whose pid, logs and
temp paths are all in a temp dir. Each substitution must match the shipped text, so an
edit to the file that this harness no longer understands fails loudly instead of testing
something else.

nginx runs in the foreground as a child of the test (``-p DIR -c CONF -g 'daemon off;'``)
with its error log on stderr at ``info`` (the level of its idle-timeout lines): "start worker
process" is the readiness line, and the log is kept for assertions and failure messages.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import FACTOR, TIMEOUT, unused_port

__all__ = [
    "DEPLOY_CONF",
    "Nginx",
    "location_directives",
    "nginx_binary",
    "parse_duration",
    "render_site",
    "start_nginx",
]

DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def nginx_binary() -> str:
    """Debian's nginx (scripts/ensure-system-deps installs it); skip, or fail when CI=true."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else ""
    )
    if not binary:
        if CI:
            pytest.fail("nginx is required when CI=true (scripts/ensure-system-deps)")
        pytest.skip("nginx is not installed")
    return binary


def parse_duration(value: str) -> float:
    """nginx time syntax (``75s``, ``1m``, ``500ms``, a bare number is seconds) → seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)?", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not an nginx duration: {value!r}")
    return sum(int(n) * _UNITS[u or "s"] for n, u in parts)


def location_directives(text: str, location: str) -> dict[str, str]:
    """``{directive: value}`` of one ``location PATH { ... }`` block (no nested blocks)."""
    match = re.search(rf"location\s+{re.escape(location)}\s*\{{([^{{}}]*)\}}", text)
    if match is None:
        raise AssertionError(f"no 'location {location}' block in {DEPLOY_CONF}")
    body = re.sub(r"#[^\n]*", "", match.group(1))
    directives: dict[str, str] = {}
    for statement in body.split(";"):
        words = statement.split(None, 1)
        if words:
            directives.setdefault(words[0], words[1].strip() if len(words) > 1 else "")
    return directives


def _substitute(text: str, pattern: str, repl: str, *, count: int | None = None) -> str:
    new, found = re.subn(pattern, repl, text)
    if found == 0 or (count is not None and found != count):
        raise AssertionError(
            f"{DEPLOY_CONF}: expected {count or 'some'} match(es) of {pattern!r}, found {found}:"
            " update tests/nginx_support.py with the file"
        )
    return new


def render_site(upstreams: Sequence[int], listen: int, *, read_timeout: float | None = None) -> str:
    """deploy/nginx.conf for this machine: ``hubN:8000`` → ``127.0.0.1:<port N>``, etc."""
    text = DEPLOY_CONF.read_text()
    shipped = re.findall(r"\bhub\d+:8000\b", text)
    if len(shipped) != len(upstreams):
        raise AssertionError(f"{DEPLOY_CONF} lists {shipped}; the test gave {len(upstreams)} hubs")
    ports = iter(upstreams)
    text = re.sub(r"\bhub\d+:8000\b", lambda _: f"127.0.0.1:{next(ports)}", text)
    text = _substitute(text, r"\blisten\s+80;", f"listen 127.0.0.1:{listen};", count=1)
    if read_timeout is not None:
        ms = max(1, round(read_timeout * 1000))
        text = _substitute(text, r"\bproxy_read_timeout\s+\S+;", f"proxy_read_timeout {ms}ms;")
    return text


def _main_config(root: Path, site: Path) -> str:
    # As root, nginx's workers would switch to "nobody", who cannot enter pytest's 0700 temp
    # dirs; keep them as the user running the test (the directive is ignored otherwise).
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        "error_log stderr info;\n"
        f"pid {root / 'nginx.pid'};\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {root / 'access.log'};\n"
        f"{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Nginx:
    """A foreground nginx; its stderr (the error log) is read by a thread."""

    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _pump: threading.Thread | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def log(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_line(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.proc.poll() is not None and not (self._pump and self._pump.is_alive()):
                    raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nginx: no line with {text!r}:\n{self.log()}")
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        """Fast shutdown (SIGTERM closes every proxied connection), then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10 * FACTOR)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._pump is not None:
            self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_nginx(
    root: Path, upstreams: Sequence[int], *, read_timeout: float | None = None
) -> Nginx:
    """nginx with the shipped site config on a free port in front of ``upstreams``."""
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    site = root / "wirehub.conf"
    site.write_text(render_site(upstreams, port, read_timeout=read_timeout))
    conf = root / "nginx.conf"
    conf.write_text(_main_config(root, site))
    proc = subprocess.Popen(
        [binary, "-e", "stderr", "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers go with it if the master must be killed
    )
    nginx = Nginx(proc, port, root)
    nginx._pump = threading.Thread(target=nginx._read, daemon=True)
    nginx._pump.start()
    try:
        # The master has bound the listen socket before it starts its workers.
        nginx.wait_line("start worker process ")
    except BaseException:
        nginx.stop()
        raise
    return nginx
