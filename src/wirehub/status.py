"""``wirehub status``: rich tables of a running hub, read from its REST API.

Parts a hub does not serve (a 404 on ``/api/services`` for instance) are shown
as "not available" rather than failing the whole report.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

__all__ = ["fetch_status", "render_status"]

PARTS = ("services", "bridges", "rooms", "clients")


def fetch_status(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """GET /readyz and each /api/<part>; a missing part maps to None."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as http:
        ready = http.get("/readyz")
        out["ready"] = (
            ready.json()
            if ready.headers.get("content-type", "").startswith("application/json")
            else {"status": ready.status_code}
        )
        out["ready_ok"] = ready.status_code == 200
        for part in PARTS:
            response = http.get(f"/api/{part}")
            out[part] = response.json() if response.status_code == 200 else None
    return out


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _table(title: str, columns: list[str], rows: list[list[Any]] | None) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    if rows is None:
        table.add_row("[dim]not available[/dim]", *[""] * (len(columns) - 1))
    elif not rows:
        table.add_row("[dim]none[/dim]", *[""] * (len(columns) - 1))
    for row in rows or []:
        table.add_row(*["-" if v is None else str(v) for v in row])
    return table


_NUMERIC = {
    "pid",
    "restarts",
    "exit",
    "port",
    "clients",
    "frames in",
    "frames out",
    "drops",
    "members",
    "offset",
    "messages",
    "queued",
}
_STATE_STYLE = {
    "ready": "green",
    "running": "green",
    "starting": "yellow",
    "backoff": "yellow",
    "stopping": "yellow",
    "failed": "red",
    "exited": "red",
    "stopped": "dim",
}


def render_status(url: str, console: Console) -> int:
    """Print the tables; return the exit code (0 ready, 1 unreachable, 2 not ready)."""
    try:
        status = fetch_status(url)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach the hub at {url}: {exc}", highlight=False)
        return 1
    ready = status["ready"]
    checks = ready.get("checks", ready) if isinstance(ready, dict) else {}
    verdict = "[green]ready[/green]" if status["ready_ok"] else "[red]not ready[/red]"
    console.print(f"hub {url}: {verdict}", highlight=False)
    failing = [k for k, v in checks.items() if v is False]
    if failing:
        console.print(f"  failing checks: {', '.join(failing)}", highlight=False)

    services = status["services"]
    console.print(
        _table(
            "Services",
            ["service", "state", "pid", "restarts", "exit", "uptime"],
            None
            if services is None
            else [
                [
                    s["name"],
                    f"[{_STATE_STYLE.get(s['state'], 'white')}]{s['state']}[/]",
                    s.get("pid"),
                    s.get("restarts"),
                    s.get("exit_code"),
                    f"{s['uptime']:.0f}s" if s.get("uptime") is not None else None,
                ]
                for s in services
            ],
        )
    )
    bridges = status["bridges"]
    console.print(
        _table(
            "TCP bridges",
            [
                "bridge",
                "port",
                "room",
                "clients",
                "frames in",
                "frames out",
                "bytes in/out",
                "drops",
            ],
            None
            if bridges is None
            else [
                [
                    b["name"],
                    b.get("port"),
                    b.get("room"),
                    b.get("clients"),
                    b.get("frames_in"),
                    b.get("frames_out"),
                    f"{_bytes(b.get('bytes_in'))} / {_bytes(b.get('bytes_out'))}",
                    b.get("drops"),
                ]
                for b in bridges
            ],
        )
    )
    rooms = status["rooms"]
    console.print(
        _table(
            "Rooms",
            ["room", "members", "offset", "messages"],
            None
            if rooms is None
            else [
                [r["name"], r.get("member_count"), r.get("offset"), r.get("messages")]
                for r in sorted(rooms, key=lambda r: r["name"])
            ],
        )
    )
    clients = status["clients"]
    now = time.time()
    console.print(
        _table(
            "Clients",
            ["client", "kind", "rooms", "queued", "connected"],
            None
            if clients is None
            else [
                [
                    c["id"],
                    c.get("kind"),
                    " ".join(c.get("rooms", [])),
                    c.get("queued"),
                    f"{now - c['connected_at']:.0f}s ago" if c.get("connected_at") else None,
                ]
                for c in sorted(clients, key=lambda c: c["id"])
            ],
        )
    )
    return 0 if status["ready_ok"] else 2
