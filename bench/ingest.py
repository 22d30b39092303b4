"""Ingestion benchmark: `POST /v1/requests` against a bare FastAPI app, side by side.

One run measures, under the same uvicorn settings (one worker, access log off, the same
loop and HTTP implementation) and the same load generator:

(a) offpeak's API on its embedded defaults (SQLite + local folder store, fresh data
    folder, a key created first), and
(b) bench/bare_app.py: FastAPI validating the same body model, persisting nothing.

Both servers run at once as subprocesses and take turns, round by round, so a busy
neighbour on the machine slows both alike; after each turn of (a) the run waits one
seal interval, so (a)'s writer does not seal during (b)'s turn. It prints requests/s,
p50/p99 latency, errors and server CPU per request for both, and the ratio a/b
(target >= 0.5). It then stops (a) cleanly, so its shutdown seals what is left, and
checks that every acknowledged request id is in a Parquet segment (exit 1 if any is
lost). Last, it times sealing alone: rows inserted straight into a fresh SQLite
database, then `seal_all` into a local folder store.

The load generator is this process: keep-alive HTTP/1.1 connections on asyncio
streams, one per simulated client, with every request's bytes built before the clock
starts, so the client costs far less than either server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offpeak.config import Settings
from offpeak.ingest.sealing import seal_all
from offpeak.ingest.segments import read_segment
from offpeak.schemas import RequestCreate
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import LocalStore

HOST = "127.0.0.1"
PATH = "/v1/requests"
BENCH_DIR = Path(__file__).resolve().parent
OURS_APP = ["--factory", "api_adapter.app:create_app"]
BARE_APP = ["--app-dir", str(BENCH_DIR), "bare_app:app"]
# Both servers get exactly these settings; only the application differs.
UVICORN_ARGS = [
    "--workers", "1",
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--log-level", "warning",
]  # fmt: skip
TARGET_RATIO = 0.5
SEAL_INTERVAL = Settings.model_fields["seal_interval"].default
SEAL_ROWS = Settings.model_fields["seal_rows"].default
INSERT_CHUNK = 5_000

# --- the request body: an EXXA request as a client would send it --------------------------

SYSTEM_PROMPT = (
    "You are a meticulous analyst for a European energy retailer. Answer in plain English, "
    "cite the figures you rely on, and say so when the data does not support a conclusion. "
    "Keep answers under 200 words."
)
USER_PROMPT = (
    "Below is a customer's half-hourly consumption summary for March. Identify the three "
    "periods with the highest load, estimate how much of that load could move to the night "
    "tariff window (00:30-07:30), and suggest two concrete changes the household could make. "
    "Summary: weekday mornings 1.8 kWh average between 07:00 and 09:00; weekday evenings "
    "3.4 kWh between 17:30 and 20:30 with an electric oven and a heat pump running; weekends "
    "flatter at 1.1 kWh per hour from 10:00 to 22:00; an EV charged three times a week, "
    "usually starting at 18:45 and drawing 7.2 kW for about three hours."
)


def request_body(index: int) -> dict[str, Any]:
    """The body of `POST /v1/requests` number ``index`` (its own custom_id)."""
    return {
        "request_body": {
            "model": "llama-3.1-70b-instruct-fp16",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_PROMPT},
            ],
            "max_tokens": 512,
            "temperature": 0.2,
        },
        "metadata": {"custom_id": f"bench-{index:07d}", "source": "bench/ingest.py"},
    }


def http_requests(start: int, count: int, api_key: str) -> list[bytes]:
    """Complete HTTP/1.1 keep-alive requests, ready to write to a socket."""
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {api_key}\r\nContent-Length: "
    )
    messages = []
    for index in range(start, start + count):
        body = json.dumps(request_body(index), separators=(",", ":")).encode()
        messages.append(f"{head}{len(body)}\r\n\r\n".encode() + body)
    return messages


def split(messages: list[bytes], parts: int) -> list[list[bytes]]:
    """``messages`` in ``parts`` consecutive slices of (nearly) equal size."""
    size = len(messages)
    return [messages[i * size // parts : (i + 1) * size // parts] for i in range(parts)]


# --- the load generator --------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one or more load runs measured."""

    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    ids: list[str] = field(default_factory=list)

    def add(self, other: LoadResult) -> None:
        self.elapsed += other.elapsed
        self.latencies += other.latencies
        self.errors += other.errors
        self.ids += other.ids

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (uvicorn always sends Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def client(port: int, queue: Iterator[bytes], result: LoadResult) -> None:
    """One simulated client: sends the next queued request as soon as it has an answer."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for message in queue:
            started = time.perf_counter()
            try:
                writer.write(message)
                status, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            if status != 201:
                result.errors += 1
                continue
            result.latencies.append(time.perf_counter() - started)
            result.ids.append(json.loads(body)["id"])
    finally:
        writer.close()


async def drive(port: int, messages: list[bytes], concurrency: int) -> LoadResult:
    """Send ``messages`` from ``concurrency`` clients sharing one queue."""
    result = LoadResult()
    queue = iter(messages)
    started = time.perf_counter()
    await asyncio.gather(*(client(port, queue, result) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def run(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run on uvloop when installed (it is, with uvicorn[standard]): a cheaper client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(data_dir: Path) -> dict[str, str]:
    """This environment without any OFFPEAK_ setting, pointed at ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFPEAK_")}
    env["OFFPEAK_DATA_DIR"] = str(data_dir)
    return env


def create_api_key(env: dict[str, str]) -> str:
    """A key with credits, made through the CLI as an operator would (after migrating)."""
    offpeak = str(Path(sys.executable).parent / "offpeak")
    subprocess.run([offpeak, "db", "upgrade"], env=env, check=True, capture_output=True)
    output = subprocess.run(
        [str(Path(sys.executable).parent / "offpeak"), "keys", "create", "--name", "bench",
         "--credits", "5", "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return str(json.loads(output)["key"])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; NaN where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rpartition(")")[2].split()  # fields from the 3rd on (state, ppid, ...)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A uvicorn subprocess and what was measured against it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    load: LoadResult = field(default_factory=LoadResult)
    cpu: float = 0.0
    acknowledged: set[str] = field(default_factory=set)

    def play(self, messages: list[bytes], concurrency: int, *, timed: bool = True) -> None:
        """Send ``messages``; a timed turn counts toward the figures."""
        before = cpu_seconds(self.process.pid)
        result = run(drive(self.port, messages, concurrency))
        self.acknowledged.update(result.ids)
        if timed:
            self.cpu += cpu_seconds(self.process.pid) - before
            self.load.add(result)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu * 1000 / len(self.load.latencies) if self.load.latencies else 0.0


@contextmanager
def serve(name: str, app: list[str], env: dict[str, str]) -> Iterator[Server]:
    """A uvicorn subprocess serving ``app``; stopped cleanly (SIGINT) on exit."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", *app, "--host", HOST, "--port", str(port)]
    process = subprocess.Popen([*command, *UVICORN_ARGS], env=env, cwd=BENCH_DIR.parent)
    try:
        wait_listening(process, port)
        yield Server(name, port, process)
    finally:
        stop(process)


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    # uvicorn binds its socket only after the app's start-up has finished.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server not listening on port {port} after {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    """Stop like Ctrl-C does (the app's shutdown runs); returns the seconds it took."""
    if process.poll() is not None:
        return 0.0
    started = time.perf_counter()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.perf_counter() - started


# --- durability and sealing --------------------------------------------------------------


def ids_in_segments(objects: Path) -> set[str]:
    """Every request id in the Parquet segments of a local object store."""
    store = LocalStore(objects)
    found: set[str] = set()
    for key in store.list("requests/"):
        if key.endswith(".parquet"):
            found.update(read_segment(store, key).column("id").to_pylist())
    return found


@dataclass
class SealRun:
    rows: int
    insert_seconds: float
    seal_seconds: float
    segments: int


def measure_sealing(rows: int) -> SealRun:
    """Insert ``rows`` accepted requests into a fresh SQLite database, then seal them all."""
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-seal-") as tmp:
        db = Database.migrated(f"sqlite:///{Path(tmp) / 'offpeak.db'}")
        key, _ = create_key(db, "bench", 5)
        create = RequestCreate.model_validate(request_body(0))
        created_at = int(time.time())
        batch = [new_request_row(key.id, create, created_at) for _ in range(rows)]
        for index, row in enumerate(batch):
            row["meta"] = request_body(index)["metadata"]
        started = time.perf_counter()
        for start in range(0, rows, INSERT_CHUNK):
            insert_requests(db, batch[start : start + INSERT_CHUNK])
        inserted = time.perf_counter()
        results = seal_all(db, LocalStore(Path(tmp) / "objects"), SEAL_ROWS)
        sealed = time.perf_counter()
        db.dispose()
    if sum(r.rows for r in results) != rows:
        raise SystemExit(f"sealed {sum(r.rows for r in results)} rows, expected {rows}")
    return SealRun(rows, inserted - started, sealed - inserted, len(results))


# --- the run and its report -----------------------------------------------------------------


def report_line(server: Server) -> str:
    load = server.load
    return (
        f"{server.name:<24}{load.rate:>9,.0f}{load.percentile_ms(50):>9.1f}"
        f"{load.percentile_ms(99):>9.1f}{load.errors:>8}{server.cpu_ms_per_request:>13.2f}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests per server")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=4, help="turns each server takes")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed requests first")
    parser.add_argument("--seal-rows", type=int, default=100_000, help="rows for the seal test")
    parser.add_argument("--keep", action="store_true", help="keep the data folder of (a)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="offpeak-bench-"))
    env = clean_env(data_dir)
    try:
        api_key = create_api_key(env)
        warmup = http_requests(0, args.warmup, api_key)
        turns = split(http_requests(args.warmup, args.requests, api_key), args.rounds)
        print(f"(a) offpeak API with data in {data_dir}, (b) bench/bare_app.py", flush=True)
        with (
            serve("(a) offpeak (SQLite)", OURS_APP, env) as ours,
            serve("(b) bare FastAPI", BARE_APP, clean_env(data_dir / "bare")) as bare,
        ):
            for server in (ours, bare):
                server.play(warmup, args.concurrency, timed=False)
            time.sleep(SEAL_INTERVAL)
            for number, messages in enumerate(turns, 1):
                print(f"round {number}/{args.rounds}", flush=True)
                ours.play(messages, args.concurrency)
                time.sleep(SEAL_INTERVAL + 0.5)  # (a)'s writer seals this turn's rows now
                bare.play(messages, args.concurrency)
            shutdown_seconds = stop(ours.process)
        in_segments = ids_in_segments(data_dir / "objects") & ours.acknowledged
        print(f"sealing {args.seal_rows:,} rows directly", flush=True)
        sealing = measure_sealing(args.seal_rows)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    lost = len(ours.acknowledged) - len(in_segments)
    ratio = ours.load.rate / bare.load.rate if bare.load.rate else 0.0
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"\nPOST {PATH}: {args.requests:,} requests per server in {args.rounds} rounds, "
        f"{args.concurrency} clients, {args.warmup:,} warm-up, {os.cpu_count()} CPUs\n"
        f"uvicorn {' '.join(UVICORN_ARGS)}"
    )
    print(f"{'server':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/req':>13}")
    print(report_line(ours))
    print(report_line(bare))
    print(f"{'ratio a/b (req/s)':<24}{ratio:>9.2f}   target >= {TARGET_RATIO}: {verdict}")
    print(
        f"{'durability':<24}acknowledged {len(ours.acknowledged):,}, in segments "
        f"{len(in_segments):,}, lost {lost:,} (clean shutdown took {shutdown_seconds:.1f}s)"
    )
    print(
        f"{'sealing':<24}{sealing.rows / sealing.seal_seconds:,.0f} rows/s: {sealing.rows:,} rows "
        f"into {sealing.segments} segments in {sealing.seal_seconds:.1f}s "
        f"(bulk insert before it: {sealing.rows / sealing.insert_seconds:,.0f} rows/s)"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
