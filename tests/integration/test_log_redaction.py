"""A token in a WebSocket query string never reaches the server's log lines."""

from __future__ import annotations

import logging

from support import open_client
from wirehub.logredact import redact


def test_redact_keeps_the_path_and_hides_every_secret_parameter():
    assert redact("/ws?token=abc.def&client_id=me") == "/ws?token=[redacted]&client_id=me"
    assert redact("/ws?client_id=me&ACCESS_TOKEN=x") == "/ws?client_id=me&ACCESS_TOKEN=[redacted]"
    assert redact("/ws?monkey=1") == "/ws?monkey=1"
    long = redact("/ws?x=" + "A" * 40_000)
    assert len(long) < 600 and long.endswith("[40006 chars]")


async def test_uvicorn_logs_the_websocket_path_without_the_token(hub, caplog):
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    client = await open_client(hub.ws + "?token=s3cr3t-value&client_id=log-me")
    await client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    accepted = [line for line in lines if "WebSocket" in line and "log-me" in line]
    assert accepted, lines
    assert all("s3cr3t-value" not in line for line in lines)
    assert "token=[redacted]" in accepted[0]
