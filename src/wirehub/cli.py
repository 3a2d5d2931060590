"""The ``wirehub`` command line; the only place logging is configured."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wirehub.errors import ConfigError
from wirehub.log import configure
from wirehub.settings import load_settings

__all__ = ["app", "main"]

app = typer.Typer(help="wirehub: a real-time hub for FastAPI.", no_args_is_help=True)
err = Console(stderr=True)
logger = logging.getLogger("wirehub.cli")


@app.callback()
def _root() -> None:
    """wirehub: a real-time hub for FastAPI."""


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (WIREHUB_* env vars override it)"),
]


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8000; 0 picks a free one)")
    ] = None,
) -> None:
    """Run the hub (uvicorn, uvloop, httptools)."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    configure(settings.server.log_level)
    from wirehub.server import build_server

    server = build_server(settings, host=host, port=port)
    bind = server.config.host
    if not _is_loopback(bind):
        logger.warning("binding to %s: the hub is reachable from the network", bind)
    server.run()
    if not server.started:
        raise typer.Exit(1)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    app()
