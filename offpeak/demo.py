"""`make demo`: the EXXA getting-started page, run as written against a local offpeak.

On the embedded defaults (SQLite state, a local folder as object store, both under
``./.offpeak-demo``, wiped at start), the demo creates an API key with the CLI, starts
the API, runs the getting-started snippets with only the base URL and the placeholder
ids changed, waits for the requests to be sealed into Parquet segments and shows them,
cancels a request (and shows that a second cancel is refused), then stops the API.

Run it with ``python -m offpeak.demo``; it exits non-zero with a message on any failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

from offpeak.config import Settings, load_settings
from offpeak.errors import OffpeakError
from offpeak.segments import read_segment
from offpeak.state.db import Database
from offpeak.state.models import Request
from offpeak.storage import open_store

DATA_DIR_NAME = ".offpeak-demo"
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# Variables that would point the demo away from its own embedded data folder.
FOREIGN_SETTINGS = ("OFFPEAK_DATABASE_URL", "OFFPEAK_STORAGE_URL")

# Single requests to send: (model, prompt). The first is the getting-started payload.
PROMPTS = [
    ("llama-3.1-70b-instruct-fp16", "Your query here"),
    ("llama-3.1-8b-instruct-fp16", "Write a haiku about wind turbines at night."),
    ("llama-3.3-70b-instruct-fp16", "Explain grid carbon intensity in two sentences."),
    ("llama-3.1-nemotron-70b-instruct-fp16", "Name three ways to shift compute off-peak."),
]


class DemoError(Exception):
    """A step of the demo did not go as expected."""


# --- output -------------------------------------------------------------------------------

_TTY = sys.stdout.isatty()


def header(title: str) -> None:
    line = f"== {title} =="
    print(f"\n\033[1m{line}\033[0m" if _TTY else f"\n{line}", flush=True)


def note(text: str) -> None:
    print(f"   {text}", flush=True)


def compact(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


def show(response: requests.Response, expect: int) -> Any:
    """Print ``response`` as one line of JSON and return its body; fail on another status."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    method = response.request.method if response.request else "?"
    path = urlsplit(response.url).path
    print(f"   {method} {path} -> {response.status_code} {compact(body)}", flush=True)
    if response.status_code != expect:
        raise DemoError(f"{method} {path} answered {response.status_code}, expected {expect}")
    return body


# --- processes ----------------------------------------------------------------------------


def offpeak_command() -> str:
    """The venv's `offpeak` script, next to the running interpreter."""
    script = Path(sys.executable).with_name("offpeak")
    if not script.is_file():
        raise DemoError(f"{script} not found: install the project first (make install)")
    return str(script)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def create_key(env: dict[str, str]) -> str:
    command = [offpeak_command(), "keys", "create", "--name", "demo", "--credits", "10", "--json"]
    note("$ offpeak keys create --name demo --credits 10 --json")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise DemoError(f"`offpeak keys create` failed ({done.returncode}): {done.stderr.strip()}")
    created = json.loads(done.stdout)
    shown = {**created, "key": created["key"][:12] + "..."}
    note(f"{compact(shown)}  (the secret is printed once; shortened here)")
    return str(created["key"])


@contextmanager
def api_server(env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`offpeak api` in a child process, ready when it yields, always stopped after."""
    log = log_path.open("w")
    command = [offpeak_command(), "api", "--port", str(port)]
    note(f"$ offpeak api --port {port}   (log: {log_path})")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(proc, f"http://{HOST}:{port}/healthz", log_path)
        yield proc
    finally:
        stop(proc)
        log.close()


def wait_healthy(proc: subprocess.Popen[str], url: str, log_path: Path) -> None:
    started = time.monotonic()
    deadline = started + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the API exited with code {proc.returncode}:\n{tail(log_path)}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                note(f"GET /healthz -> 200 after {time.monotonic() - started:.1f}s")
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise DemoError(f"the API was not healthy after {STARTUP_TIMEOUT:.0f}s:\n{tail(log_path)}")


def stop(proc: subprocess.Popen[str]) -> int:
    """Stop the API as Ctrl-C would (its writer seals what is left), then harder if needed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "   (no API log)"
    return "\n".join(f"   | {line}" for line in text[-lines:])


# --- the getting-started snippets ---------------------------------------------------------


def send_requests(base_url: str) -> list[str]:
    header("2. Send requests (getting started, step 2)")
    request_ids: list[str] = []

    api_key = os.environ["EXXA_API_KEY"]
    url = f"{base_url}/requests"
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    for model, content in PROMPTS:
        payload = {
            "request_body": {
                "model": model,
                "messages": [{"role": "user", "content": content}],
            }
        }

        response = requests.post(url, headers=headers, json=payload)
        request_ids.append(show(response, 201)["id"])
    return request_ids


def create_batch(base_url: str, request_ids: list[str]) -> str:
    header("3. Create a batch of two requests (step 3)")

    api_key = os.environ["EXXA_API_KEY"]
    url = f"{base_url}/batches"
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    payload = {
        "requests_ids": [request_ids[0], request_ids[1]],
        "metadata": {"batch_name": "MyFirstBatch"},
    }

    response = requests.post(url, headers=headers, json=payload)
    return str(show(response, 201)["id"])


def check_batch_status(base_url: str, batch_id: str) -> None:
    header("4. Check the status of the batch (step 4.1)")

    api_key = os.environ["EXXA_API_KEY"]
    url = f"{base_url}/batches/{batch_id}/status"
    headers = {"X-API-Key": api_key}

    response = requests.get(url, headers=headers)
    show(response, 200)


def check_request_status(base_url: str, request_ids: list[str]) -> None:
    header("5. Check the status of a request (step 4.2)")

    api_key = os.environ["EXXA_API_KEY"]
    request_id = request_ids[0]
    url = f"{base_url}/requests/{request_id}/status"
    headers = {"X-API-Key": api_key}

    response = requests.get(url, headers=headers)
    show(response, 200)

    note("Is a request in a batch? Its full object (GET /v1/requests/{id}) has batch_id:")
    for request_id in (request_ids[0], request_ids[2]):
        response = requests.get(f"{base_url}/requests/{request_id}", headers=headers)
        batch = show_quiet(response, 200)["batch_id"]
        note(f"  {request_id}: batch_id = {compact(batch)}")


def show_quiet(response: requests.Response, expect: int) -> Any:
    if response.status_code != expect:
        raise DemoError(f"{response.url} answered {response.status_code}: {response.text}")
    return response.json()


def cancel(base_url: str, request_id: str) -> None:
    header("7. Cancel a request (step 6), then cancel it again")

    api_key = os.environ["EXXA_API_KEY"]
    headers = {"X-API-Key": api_key}

    # Cancel an individual request
    url = f"{base_url}/batches/{request_id}/cancel"
    response = requests.post(url, headers=headers)
    show(response, 200)

    note("A second cancel is refused: the request has already ended.")
    response = requests.post(url, headers=headers)
    show(response, 409)


# --- sealing: the state database and the Parquet segments ---------------------------------


def wait_sealed(settings: Settings, request_ids: list[str]) -> list[Request]:
    """The requests' rows once every one of them points at a segment."""
    header(f"6. Sealed into Parquet (the API seals every {settings.seal_interval:g}s)")
    db = Database(settings.database_url or "", run_migrations=False)
    try:
        started = time.monotonic()
        deadline = started + 5 * settings.seal_interval + 10
        while True:
            with db.session() as session:
                rows = list(
                    session.scalars(
                        select(Request).where(Request.id.in_(request_ids)).order_by(Request.id)
                    )
                )
            if len(rows) == len(request_ids) and all(r.segment for r in rows):
                note(f"all {len(rows)} requests sealed after {time.monotonic() - started:.1f}s")
                return rows
            if time.monotonic() > deadline:
                waiting = [r.id for r in rows if not r.segment]
                raise DemoError(f"requests still unsealed after the wait: {', '.join(waiting)}")
            time.sleep(0.2)
    finally:
        db.dispose()


def show_segments(settings: Settings, rows: list[Request]) -> None:
    note("state DB (offpeak.state): status, batch and segment of each request")
    for row in rows:
        body = "kept" if row.body else "dropped (now in the segment)"
        note(f"  {row.id}  {row.status:10}  batch={row.batch_id or '-':24}  body in DB: {body}")
        note(f"    segment: {row.segment}")
    store = open_store(settings)
    for key in sorted({r.segment for r in rows if r.segment}):
        table = read_segment(store, key)
        note(f"segment {key}  (offpeak.segments.read_segment)")
        note(f"  file: {store.uri(key)}")
        note(f"  rows: {table.num_rows}")
        note("  schema: " + ", ".join(f"{f.name}: {f.type}" for f in table.schema))
        first = table.slice(0, 1).to_pylist()[0]
        note(f"  first row: {first['id']} {first['model']} request_body={first['request_body']}")


# --- the whole run ------------------------------------------------------------------------


def run(data_dir: Path) -> None:
    header("1. Fresh data folder, API key, API server")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    note(f"data folder: {data_dir} (SQLite state + local object store)")
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
    env["OFFPEAK_DATA_DIR"] = str(data_dir)
    settings = load_settings(data_dir=data_dir, database_url=None, storage_url=None)

    os.environ["EXXA_API_KEY"] = create_key(env)
    # The snippets use `requests`, which would send loopback calls to a configured proxy.
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
        p for p in (no_proxy, HOST, "localhost") if p
    )

    port = free_port()
    base_url = f"http://{HOST}:{port}/v1"
    with api_server(env, port, data_dir / "api.log") as proc:
        request_ids = send_requests(base_url)
        batch_id = create_batch(base_url, request_ids)
        check_batch_status(base_url, batch_id)
        check_request_status(base_url, request_ids)
        rows = wait_sealed(settings, request_ids)
        show_segments(settings, rows)
        cancel(base_url, request_ids[2])

        header("8. Stop the API")
        code = stop(proc)
        if code != 0:
            raise DemoError(f"the API exited with code {code}:\n{tail(data_dir / 'api.log')}")
        note("stopped cleanly (exit code 0)")

    header("Summary")
    note(f"API key created with the CLI; API served on {base_url}")
    note(f"{len(request_ids)} requests sent with the getting-started snippets")
    note(f"batch {batch_id} (MyFirstBatch) created from two of them; statuses read back")
    note(f"all {len(rows)} requests sealed into Parquet segments and read back")
    note(f"request {request_ids[2]} cancelled; a second cancel answered 409")
    note(f"data folder: {data_dir} (state DB offpeak.db, segments under objects/)")


def _terminated(signum: int, _frame: object) -> None:
    print("\ndemo terminated", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: the API is stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    data_dir = Path.cwd() / DATA_DIR_NAME
    started = time.monotonic()
    try:
        run(data_dir)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    except (DemoError, OffpeakError, requests.RequestException, OSError, ValueError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
