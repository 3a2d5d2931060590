"""A stand-in for the tutorial's Java service: chatty start-up, a ready line, HTTP.

    python examples/supervised_service/stand_in_server.py --port 8081 [--startup 0.5]

It prints a few start-up lines, then ``Server - Started on port N`` (the line
the hub waits for), serves ``GET /health`` and ``GET /greet?name=...``, and
stops cleanly on SIGTERM, printing ``Server - Stopping``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

__all__ = ["main"]


class Handler(BaseHTTPRequestHandler):
    greeted = 0

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            self.reply({"status": "up"})
        elif url.path == "/greet":
            name = parse_qs(url.query).get("name", ["world"])[0]
            Handler.greeted += 1
            self.reply(
                {"greeting": f"Hello, {name}!", "served": Handler.greeted, "pid": os.getpid()}
            )
        else:
            self.reply({"error": "not found"}, status=404)

    def reply(self, body: dict[str, object], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print("INFO  http - " + fmt % args, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--startup", type=float, default=0.5, help="seconds of fake start-up")
    args = parser.parse_args()
    print("INFO  boot - loading configuration", flush=True)
    time.sleep(args.startup / 2)
    print("INFO  boot - warming caches", flush=True)
    time.sleep(args.startup / 2)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(signum: int, frame: object) -> None:
        print("INFO  Server - Stopping", flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"INFO  Server - Started on port {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("INFO  Server - Stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
