"""A fake supervised service: one behaviour per mode, for the supervisor tests.

    python fake_service.py ready [--stderr] [--delay S]   prints "Server - Started" and waits
    python fake_service.py never                          prints but never the ready line
    python fake_service.py exit CODE                      complains on stderr and exits
    python fake_service.py crash-after-ready SECONDS      ready, then exits with code 3
    python fake_service.py ignore-term                    ready, and ignores SIGTERM
    python fake_service.py spawn-child [--leader-exits]   starts a child (same group, holds stdout)
    python fake_service.py burst N                        ready, then N lines as fast as it can
    python fake_service.py bigline SIZE                   ready, one SIZE-byte line, bad UTF-8, "after"
    python fake_service.py buffered                       print() without flush (needs PYTHONUNBUFFERED)
    python fake_service.py http PORT                      serves GET /health and /echo on PORT

Every mode exits 0 on SIGTERM (except ignore-term), printing "stopping".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

READY = "Server - Started"


def out(text: str, *, stream=None, flush: bool = True) -> None:
    print(text, file=stream or sys.stdout, flush=flush)


def on_term(signum, frame) -> None:
    out("stopping")
    sys.exit(0)


def idle() -> None:
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, on_term)
    mode, args = argv[0], argv[1:]
    out(f"booting pid={os.getpid()} pgid={os.getpgrp()}")
    if mode == "ready":
        if "--delay" in args:
            time.sleep(float(args[args.index("--delay") + 1]))
        out(READY, stream=sys.stderr if "--stderr" in args else sys.stdout)
        idle()
    elif mode == "never":
        idle()
    elif mode == "exit":
        out("fatal: cannot open config", stream=sys.stderr)
        sys.exit(int(args[0]))
    elif mode == "crash-after-ready":
        out(READY)
        time.sleep(float(args[0]))
        out("crashing", stream=sys.stderr)
        sys.exit(3)
    elif mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out(READY)
        idle()
    elif mode == "spawn-child":
        # The child inherits stdout and ignores SIGTERM: only SIGKILL to the group ends it.
        code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
        child = subprocess.Popen([sys.executable, "-c", code])
        out(f"child pid={child.pid}")
        out(READY)
        if "--leader-exits" in args:
            time.sleep(0.2)
            os._exit(7)  # the child keeps our stdout open
        idle()
    elif mode == "burst":
        out(READY)
        write = sys.stdout.write
        for i in range(int(args[0])):
            write(f"line {i}\n")
        sys.stdout.flush()
        out("burst done")
        idle()
    elif mode == "bigline":
        out(READY)
        sys.stdout.write("x" * int(args[0]) + "\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
        sys.stdout.buffer.flush()
        out("after")
        idle()
    elif mode == "buffered":
        print(READY)  # no flush: only PYTHONUNBUFFERED=1 gets it out now
        idle()
    elif mode == "http":
        serve_http(int(args[0]))
    else:
        sys.exit(f"unknown mode {mode}")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            body = {"ok": True}
        elif url.path == "/echo":
            body = {"echo": parse_qs(url.query), "pid": os.getpid()}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        out("http: " + fmt % args)


def serve_http(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    out(f"{READY} on port {server.server_address[1]}")
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
