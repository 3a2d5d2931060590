"""examples/tcp_to_websocket, examples/jobs and examples/upload_pipeline run as their READMEs say.

Each test follows its README's commands with real processes: ``wirehub serve`` (and
``wirehub worker``, redis-server) as subprocesses, the example scripts and the CLI as
subprocesses, on free ports. Only what a README hard-codes (ports, the spool directory,
the Redis URL) is changed, in a copy of the example's ``hub.toml``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from redis_support import spawn_worker
from support import FACTOR, TIMEOUT, HubProcess, spawn_hub, unused_port
from wirehub.bridges.example_codec import decode_reading, encode_reading

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


class Output:
    """A subprocess whose merged stdout/stderr a thread collects line by line."""

    def __init__(self, args: list[str], *, stdin: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, pattern: str, start: int, timeout: float) -> tuple[int, re.Match[str]]:
        deadline = time.monotonic() + timeout * FACTOR
        regex = re.compile(pattern)
        with self._cond:
            index = start
            while True:
                while index < len(self.lines):
                    if found := regex.search(self.lines[index]):
                        return index, found
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._pump.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.text()}")
                self._cond.wait(min(left, 0.5))

    async def line(self, pattern: str, start: int = 0, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first line from ``start`` on that matches ``pattern`` (a regex)."""
        return (await asyncio.to_thread(self._wait, pattern, start, timeout))[1]

    async def lines_matching(self, pattern: str, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` lines match ``pattern``."""

        def wait() -> None:
            index = -1
            for _ in range(count):
                index = self._wait(pattern, index + 1, timeout)[0]

        await asyncio.to_thread(wait)

    def text(self) -> str:
        return "\n".join(self.lines)

    def type_line(self, line: str) -> None:
        """Type a line on the process's stdin (a terminal user pressing Enter)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def cleanup(self) -> None:
        """Kill the process if it still runs, then close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._pump.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``wirehub <args>`` to the end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        cwd=ROOT,
    )
    try:
        out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT * 4)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    return proc.returncode or 0, out.decode(), errs.decode()


def wirehub(*args: str) -> list[str]:
    return [sys.executable, "-m", "wirehub", *args]


def pythonpath(*folders: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([*map(str, folders), os.environ.get("PYTHONPATH", "")])}


@contextlib.contextmanager
def hub_process(config: Path, env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    """``wirehub serve --config config --port <free>``, killed and closed at the end."""
    hp = spawn_hub(config, env=env)
    try:
        yield hp
    finally:
        hp.cleanup()


# -- tcp_to_websocket ------------------------------------------------------------------------


def _readings(device: Output, kind: str) -> list[object]:
    """What the device printed it sent (``-> ...``), as the data the room should publish."""
    sent = [line[3:] for line in device.lines if line.startswith("-> ")]
    if kind == "lines":
        return sent
    if kind == "json":
        return [orjson.loads(text) for text in sent]
    return [decode_reading(bytes.fromhex(text)[4:]) for text in sent]


async def test_tcp_devices_reach_websocket_rooms_and_back(tmp_path, ws_client):
    source = (EXAMPLES / "tcp_to_websocket" / "hub.toml").read_text()
    ports = {old: unused_port() for old in (9001, 9002, 9003)}
    config = source.replace("port = 8000", f"port = {unused_port()}")
    for old, new in ports.items():
        config = config.replace(f"port = {old}", f"port = {new}")
    assert all(f"port = {new}" in config for new in ports.values())
    (tmp_path / "hub.toml").write_text(config)

    procs: dict[str, Output] = {}
    with hub_process(tmp_path / "hub.toml") as hub:
        try:
            log = hub.output()
            for kind, room, framing, old in (
                ("lines", "plant", "line", 9001),
                ("json", "plant", "jsonl", 9002),
                ("binary", "sensors", "length", 9003),
            ):
                assert (
                    f"bridge {kind} listening on 127.0.0.1:{ports[old]} "
                    f"(room {room}, framing {framing}, direction both)"
                ) in log
            # Terminal 2: `wirehub tail plant`; and WebSocket clients in both rooms.
            procs["tail"] = tail = Output(wirehub("tail", "plant", "--url", hub.ws))
            await tail.line(r"^joined plant at offset 0$")
            plant = await ws_client(hub.ws, "plant-watcher")
            sensors = await ws_client(hub.ws, "sensor-watcher")
            await plant.request("join", room="plant")
            await sensors.request("join", room="sensors")

            # Terminal 3: the fake devices, one per port, two readings each.
            script = str(EXAMPLES / "tcp_to_websocket" / "fake_device.py")
            devices = {}
            for kind, old, sensor in (("lines", 9001, 1), ("json", 9002, 1), ("binary", 9003, 7)):
                options = ["--sensor", str(sensor), "--count", "2", "--interval", "0.05"]
                procs[kind] = devices[kind] = Output(
                    [sys.executable, script, kind, "--port", str(ports[old]), *options]
                )
            for kind, device in devices.items():
                await device.line(rf"^connected to 127\.0\.0\.1:\d+ as a '{kind}' device")
                await device.lines_matching(r"^-> ", 2)  # both readings went out

            # Every reading reaches the room, decoded: text lines, JSON data, codec dicts.
            by_sender: dict[str, list[object]] = collections.defaultdict(list)
            for _ in range(4):
                frame = await plant.wait_for("message", room="plant")
                by_sender[frame["from"].split(":")[1]].append(frame["data"])
            assert by_sender == {"lines": _readings(devices["lines"], "lines"),
                                 "json": _readings(devices["json"], "json")}  # fmt: skip
            assert all(re.fullmatch(r"sensor=1 temp=[\d.]+ humidity=[\d.]+", text)
                       for text in by_sender["lines"])  # fmt: skip
            binary = [(await sensors.wait_for("message", room="sensors"))["data"] for _ in "ab"]
            assert binary == _readings(devices["binary"], "binary")
            assert all(set(r) == {"sensor", "temp", "humidity"} and r["sensor"] == 7
                       and 18 <= r["temp"] <= 26 for r in binary)  # fmt: skip
            # `wirehub tail plant` printed the same four messages, one JSON line each.
            await tail.line(r'^\{"type":"message".*"offset":4[,}]', start=1)
            tailed = [orjson.loads(line) for line in tail.lines if line.startswith("{")]
            assert [m["offset"] for m in tailed] == [1, 2, 3, 4]
            tailed_by_sender = collections.defaultdict(list)
            for m in tailed:
                tailed_by_sender[m["from"].split(":")[1]].append(m["data"])
            assert tailed_by_sender == by_sender

            # `wirehub tcp-send` is a device too: a typed line reaches the room.
            procs["tcp-send"] = typist = Output(
                wirehub("tcp-send", f"127.0.0.1:{ports[9001]}"), stdin=True
            )
            await typist.line(r"^connected to 127\.0\.0\.1:\d+; type lines, Ctrl-D to end$")
            typist.type_line("temp 21.5")
            typed = await plant.wait_for("message", room="plant", data="temp 21.5")
            assert typed["from"].startswith("tcp:lines:127.0.0.1:")

            # Back to the devices: published over HTTP, framed for each one.
            marks = {kind: len(proc.lines) for kind, proc in procs.items()}
            async with httpx.AsyncClient(base_url=hub.http, timeout=TIMEOUT) as http:
                sent = await http.post("/api/rooms/plant/publish", json={"data": "setpoint 20"})
                assert sent.status_code == 200, sent.text
                reading = {"sensor": 7, "temp": 20.0, "humidity": 45.0}
                sent = await http.post("/api/rooms/sensors/publish", json={"data": reading})
                assert sent.status_code == 200, sent.text
                await typist.line(r"^setpoint 20$", start=marks["tcp-send"])
                await devices["lines"].line(r"^<- setpoint 20$", start=marks["lines"])
                await devices["json"].line(r'^<- "setpoint 20"$', start=marks["json"])
                await devices["binary"].line(r"^<- 07 00 c8 01 c2$", start=marks["binary"])
                stats = (await http.get("/api/bridges/lines")).json()
            assert encode_reading(reading).hex(" ") == "07 00 c8 01 c2"
            # Two lines devices (fake_device, tcp-send): 2 readings + 1 typed line came in.
            assert stats["name"] == "lines" and stats["port"] == ports[9001]
            assert stats["clients"] == 2 and stats["frames_in"] == 3 and stats["frames_out"] >= 1
        finally:
            for proc in procs.values():
                proc.cleanup()


# -- jobs ------------------------------------------------------------------------------------


def primes_below(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\0\0"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


async def test_jobs_example_streams_and_counts_primes():
    env = pythonpath(EXAMPLES / "jobs")
    with hub_process(EXAMPLES / "jobs" / "hub.toml", env=env) as hub:
        # `wirehub tail '$jobs'`: every job's events, as the dashboard sees them.
        tail = Output(wirehub("tail", "$jobs", "--url", hub.ws))
        try:
            await tail.line(r"^joined \$jobs at offset 0$")
            code, out, errs = await run_cli(
                "jobs", "submit", "answer", "--arg", "question=why", "--follow", "--url", hub.ws
            )
            assert code == 0, errs
            words = " ".join(f"word{i}" for i in range(12))
            assert orjson.loads(out.splitlines()[-1]) == f"why? {words}"
            accepted = re.search(r"job (\S+) accepted", errs)
            assert accepted, errs
            tokens = re.findall(r"'token': '(word\d+)'", errs)  # each streamed output, in order
            assert tokens == words.split(), errs

            limit = 30_000
            code, out, errs = await run_cli(
                "jobs", "submit", "count_primes", "--arg", f"limit={limit}", "--follow",
                "--url", hub.ws,
            )  # fmt: skip
            assert code == 0, errs
            assert int(out.splitlines()[-1]) == primes_below(limit) == 3245

            # Over HTTP: POST /api/jobs, then GET /api/jobs/<job_id>.
            async with httpx.AsyncClient(base_url=hub.http, timeout=TIMEOUT) as http:
                sent = await http.post(
                    "/api/jobs", json={"job": "answer", "args": {"question": "how"}}
                )
                assert sent.status_code == 202, sent.text
                job_id = sent.json()["job_id"]
                await tail.line(rf'"type":"job.result".*"job_id":"{job_id}"|'
                                rf'"job_id":"{job_id}".*"type":"job.result"')  # fmt: skip
                info = (await http.get(f"/api/jobs/{job_id}")).json()
            assert info["state"] == "succeeded" and info["result"] == f"how? {words}", info
            events = [orjson.loads(line)["data"] for line in tail.lines if line.startswith("{")]
            finished = {e["job_id"] for e in events if e.get("type") == "job.result"}
            assert {accepted.group(1), job_id} <= finished and len(finished) == 3
        finally:
            tail.cleanup()


# -- upload_pipeline -------------------------------------------------------------------------


async def test_upload_pipeline_worker_inspects_the_file(redis_url, tmp_path, monkeypatch):
    folder = EXAMPLES / "upload_pipeline"
    source = (folder / "hub.toml").read_text()
    config = source.replace("redis://127.0.0.1:6379/0", redis_url).replace(
        "/tmp/wirehub-pipeline-spool", str(tmp_path / "spool")
    )
    assert redis_url in config and str(tmp_path / "spool") in config
    # A queue of its own: the suite's shared Celery worker must not take these jobs.
    config = config.replace("[jobs]\n", f'[jobs]\nqueue = "pipeline-{uuid.uuid4().hex[:8]}"\n')
    (tmp_path / "hub.toml").write_text(config)

    lines = [
        f"{i:06d} INFO request path=/items/{i % 97} status={200 + i % 3}\n" for i in range(60_000)
    ]
    data = "".join(lines).encode()
    assert len(data) > 2 * 1024 * 1024  # several 1 MiB chunks
    big = tmp_path / "big.log"
    big.write_bytes(data)
    counts = collections.Counter(data)

    monkeypatch.setenv("PYTHONPATH", pythonpath(folder)["PYTHONPATH"])
    worker = await asyncio.to_thread(spawn_worker, tmp_path / "hub.toml")
    try:
        with hub_process(tmp_path / "hub.toml") as hub:
            code, out, errs = await run_cli(
                "upload", str(big), "--job", "inspect_file", "--arg", "top=5", "--url", hub.ws
            )
            assert code == 0, f"{errs}\nworker:\n{worker.output()}\nhub:\n{hub.output()}"
            result = orjson.loads(out.splitlines()[-1])
        assert result == {
            "name": "big.log",
            "bytes": len(data),
            "lines": len(lines),
            "sha256": hashlib.sha256(data).hexdigest(),
            "frequent_bytes": sorted(range(256), key=counts.__getitem__, reverse=True)[:5],
        }
        assert "inspect_file" in worker.output(), worker.output()  # the worker ran it
    finally:
        worker.stop()
