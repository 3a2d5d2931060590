"""The ``wirehub`` command line; the only place logging is configured."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from wirehub.errors import ConfigError, WirehubError
from wirehub.extras import require as require_extra
from wirehub.log import configure
from wirehub.settings import load_settings

__all__ = ["app", "main"]

app = typer.Typer(help="wirehub: a real-time hub for FastAPI.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)  # error lines stay whole in logs
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
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="Hub processes on the port, sharing rooms through Redis (default 1; "
            "without redis.url a private redis-server is started)",
        ),
    ] = None,
) -> None:
    """Run the hub (uvicorn, uvloop, httptools)."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    configure(settings.server.log_level)
    count = workers or settings.server.workers
    if count > 1:
        from wirehub.workers import serve_workers

        _warn_if_public(host or settings.server.host, settings.auth.mode)
        code = serve_workers(settings, workers=count, config=config, host=host, port=port)
        raise typer.Exit(code)
    from wirehub.server import build_server

    try:
        server = build_server(settings, host=host, port=port)
    except WirehubError as exc:
        # A missing extra, a codec or policy that does not import: one line, exit 1.
        err.print(f"wirehub: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    _warn_if_public(server.config.host, settings.auth.mode)
    server.run()
    if server.failed:
        raise typer.Exit(1)  # the start failed (the reason was logged)


def _warn_if_public(bind: str, auth_mode: str) -> None:
    if not _is_loopback(bind):
        logger.warning("binding to %s: the hub is reachable from the network", bind)
        if auth_mode == "none":
            logger.warning(
                "auth = 'none' on %s: anyone who reaches it may connect as any client id "
                "and use the HTTP API; see docs/security.md",
                bind,
            )


@app.command()
def asyncapi(
    app_spec: Annotated[
        str | None,
        typer.Option("--app", help="module:attr of your FastAPI app (or its Hub)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the AsyncAPI 3.0.0 document of the WebSocket API: wirehub asyncapi > asyncapi.json."""
    from wirehub.web.asyncapi.export import export

    try:
        text = export(app_spec, config)
    except WirehubError as exc:  # ConfigError: a bad --app/--config, a model that does not import
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    sys.stdout.write(text)


@app.command("tcp-send")
def tcp_send(
    target: Annotated[str, typer.Argument(help="HOST:PORT of a TCP bridge")],
    wait: Annotated[
        float, typer.Option(help="Seconds to keep printing replies after stdin ends")
    ] = 1.0,
) -> None:
    """Send stdin lines to a TCP port and print every line that comes back."""
    host, _, port = target.rpartition(":")
    if not port.isdigit():
        err.print(f"[red]error:[/red] expected HOST:PORT, got {target!r}", highlight=False)
        raise typer.Exit(2)
    try:
        asyncio.run(_tcp_send(host or "127.0.0.1", int(port), wait))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        err.print(f"[red]error:[/red] {target}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(1) from None


async def _tcp_send(host: str, port: int, wait: float) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    err.print(f"connected to {host}:{port}; type lines, Ctrl-D to end", highlight=False)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()

    def read_stdin() -> None:
        # A daemon thread on the raw descriptor: it never keeps the process
        # alive, and unlike sys.stdin's buffered reader it holds no lock that
        # interpreter shutdown would have to take (that aborts the process).
        fd = sys.stdin.fileno()
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                loop.call_soon_threadsafe(lines.put_nowait, line + b"\n")
        if pending:
            loop.call_soon_threadsafe(lines.put_nowait, pending)
        loop.call_soon_threadsafe(lines.put_nowait, b"")

    async def print_replies() -> None:
        while line := await reader.readline():
            sys.stdout.write(line.decode("utf-8", "replace"))
            sys.stdout.flush()

    threading.Thread(target=read_stdin, daemon=True, name="stdin").start()
    printer = asyncio.create_task(print_replies())
    while not printer.done():
        getter = asyncio.ensure_future(lines.get())
        await asyncio.wait([getter, printer], return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        line = getter.result()
        if not line:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(printer), wait)
            break
        writer.write(line if line.endswith(b"\n") else line + b"\n")
        await writer.drain()
    if printer.done():
        err.print("connection closed by the server", highlight=False)
    printer.cancel()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@app.command()
def tail(
    room: Annotated[str, typer.Argument(help="Room to follow, e.g. tcp:sensors or $bridges")],
    url: Annotated[str, typer.Option(help="The hub's WebSocket URL")] = "ws://127.0.0.1:8000/ws",
    since: Annotated[
        int | None, typer.Option(help="First print the messages after this offset (0: all kept)")
    ] = None,
    reconnect: Annotated[
        bool, typer.Option(help="Reconnect after a drop and print what was missed")
    ] = True,
    batch: Annotated[
        bool, typer.Option(help="Ask the hub for batched frames (several messages per frame)")
    ] = False,
) -> None:
    """Print a room's messages live, one JSON line each (Ctrl-C to stop)."""
    try:
        asyncio.run(_tail(room, url, since, reconnect, batch))
    except KeyboardInterrupt:
        pass
    except WirehubError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except _client_errors() as exc:
        err.print(f"[red]error:[/red] {url}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


async def _tail(room: str, url: str, since: int | None, reconnect: bool, batch: bool) -> None:
    import orjson

    from wirehub.client import HubClient

    async with HubClient(url, reconnect=reconnect, batch=batch) as hub:

        def on_disconnect(frame: dict[str, object]) -> None:
            why = f"{frame['code']} {frame['reason']}".strip()
            err.print(f"disconnected ({why})", highlight=False)

        def on_reconnect(frame: dict[str, object]) -> None:
            err.print(f"reconnected; re-joined {room}", highlight=False)

        hub.on("disconnect", on_disconnect)
        hub.on("reconnect", on_reconnect)
        async with hub.messages(room) as stream:
            joined = await hub.join(room, since=since)
            err.print(f"joined {room} at offset {joined['offset']}", highlight=False)
            closed = asyncio.ensure_future(hub.wait_closed())
            try:
                while True:
                    frame = asyncio.ensure_future(stream.get())
                    await asyncio.wait([frame, closed], return_when=asyncio.FIRST_COMPLETED)
                    if not frame.done():
                        frame.cancel()
                        break
                    sys.stdout.write(orjson.dumps(frame.result()).decode() + "\n")
                    sys.stdout.flush()
            finally:
                closed.cancel()
            while (rest := stream.get_nowait()) is not None:  # what came before the end
                sys.stdout.write(orjson.dumps(rest).decode() + "\n")
            sys.stdout.flush()
        if hub.error is not None:
            raise hub.error
        err.print("connection closed by the hub", highlight=False)


def _client_errors() -> tuple[type[Exception], ...]:
    """What the client raises when the hub cannot be reached or refuses the handshake."""
    from wirehub.client import CONNECT_ERRORS

    return CONNECT_ERRORS


@app.command()
def send(
    room: Annotated[str, typer.Argument(help="Room to publish into")],
    data: Annotated[str, typer.Argument(help="JSON value (anything else is sent as a string)")],
    url: Annotated[str, typer.Option(help="The hub's WebSocket URL")] = "ws://127.0.0.1:8000/ws",
    client_id: Annotated[str | None, typer.Option(help="Client id to send as")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Retry-safe: a second send with this key within the window is not delivered"
        ),
    ] = None,
) -> None:
    """Publish one message to a room and print its offset once the hub acknowledged it."""
    import orjson

    from wirehub.client import HubClient

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = data

    async def run() -> int:
        async with HubClient(url, client_id=client_id, reconnect=False) as hub:
            await hub.join(room)
            return await hub.publish(room, value, idempotency_key=idempotency_key)

    try:
        offset = asyncio.run(run())
    except WirehubError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except _client_errors() as exc:
        err.print(f"[red]error:[/red] {url}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    print(f"published to {room} at offset {offset}")


@app.command()
def status(
    url: Annotated[str, typer.Option(help="The hub's HTTP URL")] = "http://127.0.0.1:8000",
) -> None:
    """Tables of the hub's services, bridges, rooms and clients (from the REST API)."""
    from wirehub.status import render_status

    code = render_status(url, Console())
    if code:
        raise typer.Exit(code)


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run a Celery worker for the configured job modules ([jobs] runner = "celery")."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if not settings.redis_url:
        err.print("[red]error:[/red] wirehub worker needs redis_url", highlight=False)
        raise typer.Exit(2)
    try:
        require_extra("celery", "wirehub worker")
    except WirehubError as exc:
        err.print(f"wirehub: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    configure(settings.server.log_level)
    from wirehub.jobs.celery import run_worker

    run_worker(settings)


ArgOpt = Annotated[
    list[str] | None,
    typer.Option("--arg", "-a", help="Job argument k=v (v is parsed as JSON when it can be)"),
]
WsUrlOpt = Annotated[str, typer.Option(help="The hub's WebSocket URL")]

jobs_app = typer.Typer(help="Submit and follow background jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _job_args(pairs: list[str] | None) -> dict[str, object]:
    import orjson

    args: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/red] --arg expects k=v, got {pair!r}", highlight=False)
            raise typer.Exit(2)
        try:
            args[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            args[key] = raw
    return args


def _print_final(event: dict[str, object]) -> None:
    """Print a job's result as JSON on stdout; exit 1 if it did not succeed."""
    import orjson

    if event.get("type") == "job.result":
        sys.stdout.write(orjson.dumps(event.get("result")).decode() + "\n")
        return
    if event.get("type") == "upload.complete":
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        return
    error = event.get("error") or {}
    state = event.get("state", "failed")
    err.print(f"[red]job {state}:[/red] {error}", highlight=False)
    raise typer.Exit(1)


def _run_client(
    coro_factory: Callable[[], Coroutine[Any, Any, dict[str, Any]]], url: str
) -> dict[str, object]:
    """Run one client call; a refusal or an unreachable hub is one line on stderr, exit 1."""
    try:
        return asyncio.run(coro_factory())
    except WirehubError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except _client_errors() as exc:
        err.print(f"[red]error:[/red] {url}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@jobs_app.command("submit")
def jobs_submit(
    name: Annotated[str, typer.Argument(help="Job name")],
    arg: ArgOpt = None,
    follow: Annotated[bool, typer.Option(help="Show progress and print the result")] = False,
    url: WsUrlOpt = "ws://127.0.0.1:8000/ws",
) -> None:
    """Submit a job; with --follow show a progress bar and print its result."""
    from rich.progress import Progress

    from wirehub.client import output_items, submit_job

    args = _job_args(arg)
    with Progress(console=err, transient=True, disable=not follow) as bar:
        task = bar.add_task(name, total=1.0)

        def on_event(event: dict[str, object]) -> None:
            if event.get("type") == "job.accepted":
                err.print(f"job {event['job_id']} accepted", highlight=False)
            elif event.get("type") == "job.progress":
                message = event.get("message") or name
                bar.update(task, completed=float(event["progress"]), description=str(message))  # type: ignore[arg-type]
            elif event.get("type") == "job.output":
                for item in output_items(event):
                    bar.console.print(item, highlight=False)

        final = _run_client(
            lambda: submit_job(url, name, args, on_event=on_event, follow=follow), url
        )
    if follow:
        _print_final(final)
    else:
        print(final["job_id"])


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="File to upload", exists=True, dir_okay=False)],
    job: Annotated[str | None, typer.Option(help="Job to run on the uploaded file")] = None,
    arg: ArgOpt = None,
    url: WsUrlOpt = "ws://127.0.0.1:8000/ws",
) -> None:
    """Upload a file over WebSocket in chunks, then print its job's result."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from wirehub.client import upload_file

    args = _job_args(arg)
    columns = (*Progress.get_default_columns()[:2], DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        sending = bar.add_task(f"upload {file.name}", total=file.stat().st_size)
        working = None

        def on_bytes(sent: int, total: int) -> None:
            bar.update(sending, completed=sent)

        def on_event(event: dict[str, object]) -> None:
            nonlocal working
            if event.get("type") == "upload.complete" and event.get("job_id"):
                working = bar.add_task(f"job {job}", total=1.0)
            elif event.get("type") == "job.progress" and working is not None:
                bar.update(working, completed=float(event["progress"]))  # type: ignore[arg-type]

        final = _run_client(
            lambda: upload_file(
                url, file, job=job, args=args, on_bytes=on_bytes, on_event=on_event
            ),
            url,
        )
    _print_final(final)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    app()
