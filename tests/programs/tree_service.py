"""A service with children and grandchildren, one of which holds a TCP port.

    python tree_service.py PORT [--stubborn]

The leader forks a child, the child forks two grandchildren: one binds
127.0.0.1:PORT (SO_REUSEADDR, like real servers) and prints
``listening port=PORT pid=PID``, the other (with ``--stubborn``) ignores SIGTERM.
Every process prints ``pid=PID role=ROLE``; all stay in the leader's process
group and die of SIGTERM (default action) except the stubborn one.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())


def idle() -> None:
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> None:
    port = int(argv[0])
    say(f"pid={os.getpid()} role=leader")
    if os.fork() == 0:
        say(f"pid={os.getpid()} role=child")
        if "--stubborn" in argv and os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say(f"pid={os.getpid()} role=stubborn")
            idle()
        if os.fork() == 0:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                say(f"cannot bind 127.0.0.1:{port}: {exc.strerror}")
                os.killpg(os.getpgrp(), signal.SIGKILL)  # the whole service fails at once
            sock.listen()
            say(f"pid={os.getpid()} role=grandchild")
            say(f"listening port={port} pid={os.getpid()}")
            idle()
        idle()
    idle()


if __name__ == "__main__":
    main(sys.argv[1:])
