"""Keep credentials out of the server's log lines.

Browsers cannot set headers on a WebSocket, so their JWT travels as ``?token=...``
in the handshake's query string, and uvicorn logs every WebSocket path with its
query at INFO (``"WebSocket /ws?token=eyJ..." [accepted]``), as it logs every
HTTP request line in its access log. A log file is not a secret store: the hub
attaches a filter to uvicorn's loggers that replaces the value of every
credential-looking query parameter with ``[redacted]`` before a handler sees it,
whoever configured the handlers (``wirehub serve``, ``uvicorn app:app``,
gunicorn). Long query strings are cut, so a 32 KiB URL is not a 32 KiB line.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SECRET_PARAMS", "RedactSecrets", "install", "redact"]

#: Query parameters whose value never reaches a log line.
SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "jwt", "secret")

_PATTERN = re.compile(
    r"(?P<name>(?:^|[?&;])(?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&;\s\"]*)",
    re.IGNORECASE,
)
#: uvicorn's loggers that print request paths.
LOGGERS = ("uvicorn.error", "uvicorn.access")
#: Longest logged string argument; the rest is cut with a note of its length.
MAX_ARG = 512


def redact(text: str) -> str:
    """``/ws?token=abc&room=x`` → ``/ws?token=[redacted]&room=x``; long text is cut."""
    if "=" in text:
        text = _PATTERN.sub(r"\g<name>=[redacted]", text)
    if len(text) > MAX_ARG:
        text = f"{text[:MAX_ARG]}…[{len(text)} chars]"
    return text


class RedactSecrets(logging.Filter):
    """Rewrites string arguments of a record; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(record.msg, str) and not args:
            record.msg = redact(record.msg)
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Attach the filter to uvicorn's loggers (idempotent)."""
    for name in LOGGERS:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
