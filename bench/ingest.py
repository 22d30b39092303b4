"""Ingestion benchmark: `POST /v1/requests` against a bare FastAPI app, side by side.

One run measures, under the same uvicorn settings (one worker, access log off, the same
loop and HTTP implementation) and the same load generator:

(a) offpeak's API on its embedded defaults (SQLite + local folder store, fresh data
    folder, a key created first), and
(b) bench/bare_app.py: FastAPI validating the same body model and persisting nothing.

It prints requests/s, p50/p99 latency and errors for both and their ratio (target
a/b >= 0.5). It then stops (a) cleanly, so its shutdown seals what is left, and checks
that every acknowledged request id is in a Parquet segment (exit 1 if any is lost).
Last, it times sealing alone: rows inserted straight into a fresh SQLite database,
then `seal_all` into a local folder store.

The servers run as subprocesses; the load generator is this process: keep-alive
HTTP/1.1 connections on asyncio streams, one per simulated client, with the request
bytes built before the clock starts, so the client costs far less than either server.
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
from offpeak.ingest import seal_all
from offpeak.schemas import RequestCreate
from offpeak.segments import read_segment
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import LocalStore

HOST = "127.0.0.1"
PATH = "/v1/requests"
BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
# Both servers get exactly these settings; only the application differs.
UVICORN_ARGS = [
    "--workers", "1",
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--log-level", "warning",
]  # fmt: skip
TARGET_RATIO = 0.5
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
    """The body of `POST /v1/requests` number ``index`` (unique custom_id)."""
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


def http_requests(count: int, start: int, port: int, api_key: str) -> list[bytes]:
    """Complete HTTP/1.1 keep-alive requests, ready to write to a socket."""
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {api_key}\r\nContent-Length: "
    )
    messages = []
    for index in range(start, start + count):
        body = json.dumps(request_body(index), separators=(",", ":")).encode()
        messages.append(f"{head}{len(body)}\r\n\r\n".encode() + body)
    return messages


# --- the load generator --------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one load run measured."""

    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    ids: list[str] = field(default_factory=list)

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


@contextmanager
def serve(app: list[str], port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A uvicorn subprocess serving ``app``; stopped cleanly (SIGINT) on exit."""
    command = [sys.executable, "-m", "uvicorn", *app, "--host", HOST, "--port", str(port)]
    server = subprocess.Popen([*command, *UVICORN_ARGS], env=env, cwd=BENCH_DIR.parent)
    try:
        wait_listening(server, port)
        yield server
    finally:
        stop(server)


def wait_listening(server: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    # uvicorn binds its socket only after the app's start-up has finished.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server not listening on port {port} after {timeout:.0f}s")


def stop(server: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    """Stop like Ctrl-C does (lifespan shutdown runs); returns the seconds it took."""
    if server.poll() is not None:
        return 0.0
    started = time.perf_counter()
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    return time.perf_counter() - started


def create_api_key(env: dict[str, str]) -> str:
    """A key with credits, made through the CLI as an operator would."""
    output = subprocess.run(
        [str(VENV_BIN / "offpeak"), "keys", "create", "--name", "bench", "--credits", "5", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(output)["key"])


@dataclass
class ServerRun:
    """One server's measured load run, plus what durability needs to know."""

    load: LoadResult
    acknowledged: set[str] = field(default_factory=set)
    shutdown_seconds: float = 0.0


def measure(app: list[str], env: dict[str, str], api_key: str, args: argparse.Namespace) -> ServerRun:
    """Warm ``app`` up, then time ``args.requests`` requests from ``args.concurrency`` clients."""
    port = free_port()
    warmup = http_requests(args.warmup, 0, port, api_key)
    messages = http_requests(args.requests, args.warmup, port, api_key)
    with serve(app, port, env) as server:
        warm = run(drive(port, warmup, args.concurrency))
        load = run(drive(port, messages, args.concurrency))
        shutdown = stop(server)
    return ServerRun(load, set(warm.ids) | set(load.ids), shutdown)


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
    limit = Settings.model_fields["seal_rows"].default
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-seal-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'offpeak.db'}")
        key, _ = create_key(db, "bench", 5)
        create = RequestCreate.model_validate(request_body(0))
        created_at = int(time.time())
        batch = [new_request_row(key.id, create, created_at) for _ in range(rows)]
        for index, row in enumerate(batch):
            row["meta"] = {"custom_id": f"bench-{index:07d}", "source": "bench/ingest.py"}
        started = time.perf_counter()
        for start in range(0, rows, INSERT_CHUNK):
            insert_requests(db, batch[start : start + INSERT_CHUNK])
        inserted = time.perf_counter()
        results = seal_all(db, LocalStore(Path(tmp) / "objects"), limit)
        sealed = time.perf_counter()
        db.dispose()
    if sum(r.rows for r in results) != rows:
        raise SystemExit(f"sealed {sum(r.rows for r in results)} rows, expected {rows}")
    return SealRun(rows, inserted - started, sealed - inserted, len(results))


# --- the report -----------------------------------------------------------------------------


def row(name: str, load: LoadResult) -> str:
    return (
        f"{name:<22}{load.rate:>9,.0f}{load.percentile_ms(50):>9.1f}"
        f"{load.percentile_ms(99):>9.1f}{load.errors:>8}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests per server")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
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
        print(f"(a) offpeak API, data in {data_dir}", flush=True)
        ours = measure(["--factory", "api_adapter.app:create_app"], env, api_key, args)
        print("(b) bare FastAPI app", flush=True)
        bare_app = ["--app-dir", str(BENCH_DIR), "bare_app:app"]
        bare = measure(bare_app, clean_env(data_dir / "unused"), api_key, args)
        in_segments = ids_in_segments(data_dir / "objects") & ours.acknowledged
        print(f"sealing {args.seal_rows:,} rows directly", flush=True)
        sealing = measure_sealing(args.seal_rows)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    lost = len(ours.acknowledged) - len(in_segments)
    ratio = ours.load.rate / bare.load.rate if bare.load.rate else 0.0
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print()
    print(
        f"POST {PATH}: {args.requests:,} requests, {args.concurrency} clients, "
        f"{args.warmup:,} warm-up; uvicorn {' '.join(UVICORN_ARGS)}"
    )
    print(f"{'server':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    print(row("(a) offpeak (SQLite)", ours.load))
    print(row("(b) bare FastAPI", bare.load))
    print(f"{'ratio a/b':<22}{ratio:>9.2f}   target >= {TARGET_RATIO} ({verdict})")
    print(
        f"durability            acknowledged {len(ours.acknowledged):,}, in segments "
        f"{len(in_segments):,}, lost {lost:,} (clean shutdown took {ours.shutdown_seconds:.1f}s)"
    )
    print(
        f"sealing               {sealing.rows:,} rows into {sealing.segments} segments: "
        f"seal {sealing.rows / sealing.seal_seconds:,.0f} rows/s "
        f"(bulk insert {sealing.rows / sealing.insert_seconds:,.0f} rows/s)"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
