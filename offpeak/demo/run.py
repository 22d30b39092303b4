"""`make demo`: the whole offpeak pipeline on a fresh clone, driven through the EXXA API.

On the embedded defaults (SQLite state and a local object store in ``./.offpeak-demo``,
wiped at start; the tiny model and vLLM's cache in ``./.offpeak``, kept so that a second
run reuses them), the demo creates an API key with the CLI, starts the whole stack with
``offpeak serve`` (Prefect server, work pool, deployments, worker, API), builds the tiny
model, sends about 200 requests with the getting-started snippets (a few single ones and
two batches, one holding a prompt too long for the model), follows them live through the
scheduler, an inference job and publishing, checks every line of the batches' JSONL
results, sums up tokens, throughput and credits from the state database, and stops.

Run it with ``python -m offpeak.demo.run``; it exits non-zero with a message on any failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from offpeak.carbon import open_provider
from offpeak.catalog.models import ModelRegistry
from offpeak.catalog.pools import load_pools
from offpeak.config import load_settings
from offpeak.demo.display import (
    DemoError,
    Progress,
    compact,
    counts_text,
    header,
    jobs_text,
    note,
)
from offpeak.demo.receiver import register_endpoint, show_webhooks, webhook_receiver
from offpeak.demo.stack import HOST, Stack, cli, serve, tail
from offpeak.demo.workload import WINDOW, DemoBatch, send_batch, send_singles
from offpeak.engine.tiny import is_built
from offpeak.errors import OffpeakError
from offpeak.ingest.estimate import estimate_tokens
from offpeak.plan.gather import forecast_hours, read_forecasts
from offpeak.plan.pending import PendingGroup, PendingUnit
from offpeak.plan.planner import pools_from_specs
from offpeak.plan.policy import Tick, carbon
from offpeak.plan.report import plan_markdown
from offpeak.schemas import FINAL_STATUSES, ChatCompletionRequest, window_seconds
from offpeak.state.batches import batch_carbon
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Batch, Job, Request

DATA_DIR, KEEP_DIR = Path(".offpeak-demo"), Path(".offpeak")  # wiped / kept between runs

CREDITS = Decimal(10)
RUN_TIMEOUT = 480.0
# Variables that would point the demo away from its own data folder and Prefect server.
FOREIGN_SETTINGS = ("OFFPEAK_DATABASE_URL", "OFFPEAK_STORAGE_URL", "PREFECT_API_URL")
PLAN_SCALE = 1000
DEMO_SETTINGS = {
    "OFFPEAK_SCHEDULER_POLICY": "carbon",
    "OFFPEAK_SCHEDULER_INTERVAL": "5",
    "OFFPEAK_SEAL_INTERVAL": "0.5",
    # Prefect creates the runs of a new schedule on this loop (60s by default): the
    # scheduler's first run then comes within seconds, not up to a minute late.
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    # The demo's webhook receiver listens on loopback, which webhooks may not reach
    # unless this is set (tests and local use only).
    "OFFPEAK_WEBHOOK_ALLOW_PRIVATE": "true",
}
STATUSES = ("registered", "in_progress", "completed", "failed")
FINAL_RUN = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# --- the plan of a 24 h window -------------------------------------------------------------


def show_day_plan(batches: list[DemoBatch]) -> None:
    """What the carbon-aware planner does with the same work given 24 hours, at the
    scale of a production batch (PLAN_SCALE times the demo's requests: at its own size
    the work is below the planner's minimum job and would wait for more to join it):
    each engine's requests as one unit due in a day, planned on the configured pools
    and the provider's forecast (the replayed 2022 trace by default)."""
    header(f"5. The plan with a 24h window (these requests have {WINDOW}: they run now)")
    settings = load_settings()  # the stack's too: it inherits this environment
    registry = ModelRegistry.load(settings.models_path)
    pools = pools_from_specs(load_pools(settings.pools_path))
    at = datetime.now(UTC)
    due = int(at.timestamp()) + window_seconds("24h")
    tokens: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for batch in batches:
        for body in batch.bodies:
            engine = registry.engine_model(body["model"])
            tokens[engine] += estimate_tokens(ChatCompletionRequest.model_validate(body))
            counts[engine] += 1
    groups = [
        PendingGroup(
            engine,
            tuple(registry.served_by(engine)),
            (PendingUnit(due, due, n * PLAN_SCALE, tokens[engine] * PLAN_SCALE),),
        )
        for engine, n in counts.items()
    ]
    with open_provider(settings) as provider:
        zones, hours = (p.zone for p in pools), forecast_hours(groups, at)
        forecasts, sources = read_forecasts(provider, zones, at, hours)
    decision = carbon(Tick(at, groups, pools, registry, settings.job_max_requests, forecasts))
    title = f"The demo's batches x {PLAN_SCALE:,}, due in 24 h"
    for line in plan_markdown(decision.plan, groups, pools, forecasts, sources, title).splitlines():
        note(line)


# --- waiting ------------------------------------------------------------------------------


def get_json(session: requests.Session, url: str) -> Any:
    response = session.get(url, headers={"X-API-Key": os.environ["EXXA_API_KEY"]}, timeout=30)
    if response.status_code != 200:
        raise DemoError(f"GET {url} answered {response.status_code}: {response.text}")
    return response.json()


def wait_done(stack: Stack, db: Database, batches: list[DemoBatch], singles: list[str]) -> None:
    header("6. Scheduler -> inference job (vLLM) -> publish, live")
    note(f"the scheduler runs every {DEMO_SETTINGS['OFFPEAK_SCHEDULER_INTERVAL']}s; "
         f"flow runs in the Prefect UI: {stack.prefect_ui}")  # fmt: skip
    note(f"requests {'/'.join(STATUSES)}, per batch (GET /v1/batches/{{id}}) and single:")
    all_ids = [*singles, *(rid for batch in batches for rid in batch.custom_ids)]
    progress = Progress()
    with requests.Session() as session:
        while True:
            stack.check_alive()
            parts, ended = [], True
            for batch in batches:
                body = get_json(session, f"{stack.base_url}/batches/{batch.id}")
                ended &= body["status"] in FINAL_STATUSES
                parts.append(f"{batch.name} {slashed(body['request_counts'])}")
            statuses = Counter(
                get_json(session, f"{stack.base_url}/requests/{rid}/status")["status"]
                for rid in singles
            )
            ended &= set(statuses) <= FINAL_STATUSES
            parts.append(f"singles {slashed(statuses)}")
            with db.session() as db_session:
                job_ids = select(Request.job_id).where(Request.id.in_(all_ids))
                jobs = Counter(db_session.scalars(select(Job.status).where(Job.id.in_(job_ids))))
            parts.append(jobs_text(jobs))
            line = "  ".join(parts)
            if ended:
                progress.done(line)
                note("every request has ended; both batches are completed (JSONL published)")
                return
            progress.update(line)
            if time.monotonic() - progress.started > RUN_TIMEOUT:
                progress.done(line)
                raise DemoError(
                    f"not done after {RUN_TIMEOUT / 60:.0f} minutes; the end of the stack's "
                    f"log ({stack.log}):\n{tail(stack.log)}"
                )
            time.sleep(1)


def slashed(counts: dict[str, int]) -> str:
    return "/".join(str(counts.get(status, 0)) for status in STATUSES)


# --- results ------------------------------------------------------------------------------


def fetch_results(base_url: str, batch: DemoBatch) -> list[dict[str, Any]]:
    """The batch's JSONL, read as getting started's step 5 does, and checked line by line."""
    api_key = os.environ["EXXA_API_KEY"]
    batch_id = batch.id
    url = f"{base_url}/batches/{batch_id}/results"
    headers = {"X-API-Key": api_key}

    response = requests.get(url, headers=headers)
    if response.status_code != 200:
        raise DemoError(f"GET {url} answered {response.status_code}: {response.text}")
    lines = []
    for line in response.iter_lines():
        result = json.loads(line)
        lines.append(result)

    if sorted(line["id"] for line in lines) != sorted(batch.custom_ids):
        raise DemoError(f"batch {batch.name}: the ids in its results are not those sent")
    for line in lines:
        rid, custom_id = line["id"], batch.custom_ids[line["id"]]
        if line["metadata"].get("custom_id") != custom_id:
            raise DemoError(f"{rid}: metadata {line['metadata']} has not custom_id {custom_id}")
        if rid == batch.bad_id:
            if line["status"] != "failed" or line["error"]["code"] != "context_length_exceeded":
                raise DemoError(f"the too-long request did not fail as expected: {line}")
        elif line["status"] != "completed" or not (line["result_body"] or {}).get("choices"):
            raise DemoError(f"{rid} ({custom_id}) has no completion: {compact(line, 400)}")
    return lines


def show_results(base_url: str, batches: list[DemoBatch], singles: list[str]) -> None:
    header("7. Results (getting started, step 5: GET /v1/batches/{id}/results)")
    note("(the tiny model's weights are random: its text is gibberish, its tokens are real)")
    for batch in batches:
        lines = fetch_results(base_url, batch)
        by_status = counts_text(Counter(line["status"] for line in lines))
        note(f"{batch.name}: {len(lines)} JSONL lines, every one checked ({by_status})")
        first = next(line for line in lines if line["status"] == "completed")
        answer = first["result_body"]["choices"][0]["message"]["content"]
        note(f"  {first['metadata']['custom_id']}: {compact(answer, 70)}")
        note(f"    usage {compact(first['result_body']['usage'])}")
        for bad in (line for line in lines if line["id"] == batch.bad_id):
            note(f"  {bad['metadata']['custom_id']}: failed {compact(bad['error'], 140)}")
    with requests.Session() as session:
        for rid in singles[:1]:
            single = get_json(session, f"{base_url}/requests/{rid}")
            answer = single["result_body"]["choices"][0]["message"]["content"]
            note(f"single {rid} (GET /v1/requests/{{id}}): {compact(answer, 60)}")


# --- summary, from the state database -----------------------------------------------------


def summary(stack: Stack, db: Database, data_dir: Path, key_id: str) -> None:
    header("9. Summary")
    mine = Request.key_id == key_id
    with db.session() as session:
        counted = select(Request.status, func.count()).where(mine).group_by(Request.status)
        by_status = Counter({status: int(n) for status, n in session.execute(counted)})
        tokens = session.execute(
            select(func.sum(Request.prompt_tokens), func.sum(Request.completion_tokens)).where(mine)
        ).one()
        job_ids = select(Request.job_id).where(mine)
        jobs = list(session.scalars(select(Job).where(Job.id.in_(job_ids)).order_by(Job.id)))
        batches = list(session.scalars(select(Batch).where(Batch.key_id == key_id)))
        key = session.get(ApiKey, key_id)
    note(f"requests: {sum(by_status.values())} ({counts_text(by_status)})")
    note(f"tokens: {tokens[0] or 0} prompt, {tokens[1] or 0} completion")
    for job in jobs:
        wall = job.wall_seconds or 0.0
        rate = job.completion_tokens / wall if wall else 0.0
        note(f"job {job.id}: {job.request_count} requests, {job.completion_tokens} completion "
             f"tokens in {wall:.1f}s = {rate:.0f} tokens/s (vLLM's start-up included)")  # fmt: skip
    carbon = batch_carbon(db, [b.id for b in batches])
    for batch in sorted(batches, key=lambda b: b.id):
        path = data_dir / "objects" / (batch.results_key or "?")
        size = path.stat().st_size
        name = batch.meta.get("batch_name")
        note(f"{name} JSONL: ./{path.relative_to(Path.cwd())} ({size:,} B)")
        if footprint := carbon.get(batch.id):
            note(f"{name} carbon: {footprint.gco2e:.4f} gCO2e in {footprint.zone} (baseline "
                 f"{footprint.baseline_gco2e:.4f} g, saved {footprint.saved_pct}%)")  # fmt: skip
    spent = CREDITS - (key.credits_usd if key else CREDITS)
    note(f"credits: ${spent:.6f} spent of ${CREDITS}")
    show_metrics(stack)
    note(f"Prefect UI, while the stack runs: {stack.prefect_ui} (flow runs, plan artifacts)")
    note("`make serve` keeps the stack running: API http://127.0.0.1:8000/v1, Prefect UI "
         "http://127.0.0.1:4200, data in ./.offpeak")  # fmt: skip


# A few of `GET /metrics`'s lines: what an operator's Prometheus would scrape.
DEMO_METRICS = (
    "offpeak_requests{",
    "offpeak_jobs{",
    "offpeak_job_completion_tokens_total",
    "offpeak_carbon_saved_grams_total",
    'offpeak_http_requests_total{method="POST"',
)


def show_metrics(stack: Stack) -> None:
    url = f"http://{HOST}:{stack.api_port}/metrics"
    lines = requests.get(url, timeout=10).text.splitlines()
    shown = [x for x in lines if x.startswith(DEMO_METRICS) and not x.endswith(" 0.0")]
    note(f"metrics ({url}, documented in the README):")
    for line in shown[:12]:
        note(f"  {line}")


def wait_flow_runs(stack: Stack, db: Database, key_id: str) -> None:
    """Let the jobs' inference flow runs end (they report and publish after the results)
    rather than interrupt them; for half a minute at most, quietly if Prefect fails us."""
    with db.session() as session:
        job_ids = select(Request.job_id).where(Request.key_id == key_id)
        runs = session.scalars(select(Job.flow_run_id).where(Job.id.in_(job_ids))).all()
    deadline = time.monotonic() + 30
    with requests.Session() as client, suppress(requests.RequestException, KeyError, ValueError):
        for run_id in filter(None, runs):
            while time.monotonic() < deadline:
                run = client.get(f"{stack.prefect_ui}/api/flow_runs/{run_id}", timeout=10).json()
                if run["state_type"] in FINAL_RUN:
                    note(f"inference flow run {run['name']}: {run['state_name']}")
                    break
                time.sleep(0.5)


# --- the whole run ------------------------------------------------------------------------


def demo_env(data_dir: Path, keep_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
    env.update(DEMO_SETTINGS)
    env["OFFPEAK_DATA_DIR"] = str(data_dir)
    env["OFFPEAK_MODELS_DIR"] = str(keep_dir / "models")
    env["OFFPEAK_CACHE_DIR"] = str(keep_dir / "cache")
    # `requests` would send loopback calls to a configured proxy.
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy")
    env["NO_PROXY"] = env["no_proxy"] = ",".join(p for p in (no_proxy, HOST, "localhost") if p)
    return env


def run(data_dir: Path, keep_dir: Path) -> None:
    header("1. A fresh data folder and an API key")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    note(f"data: ./{DATA_DIR} (wiped); tiny model and vLLM cache: ./{KEEP_DIR} (kept)")
    env = demo_env(data_dir, keep_dir)
    os.environ.update(NO_PROXY=env["NO_PROXY"], no_proxy=env["no_proxy"])
    cli(env, "db", "upgrade")
    created = json.loads(cli(env, "keys", "create", "--name", "demo", "--credits", "10", "--json"))
    secrets = ("key", "webhook_secret")
    shown = {name: created[name][:12] + "..." for name in secrets if name in created}
    note(compact({**created, **shown}) + "  (secrets shortened)")
    os.environ["EXXA_API_KEY"] = created["key"]

    header("2. The stack: Prefect server, work pool, deployments, worker, API")
    note(" ".join(f"{k}={v}" for k, v in DEMO_SETTINGS.items()))
    with serve(env, data_dir / "serve.log") as stack:
        built = is_built(keep_dir / "models" / "tiny-chat")
        note("while it starts, build the tiny model so that the first job need not wait:")
        started = time.monotonic()
        output = cli(env, "models", "build-tiny")
        reused = " (built by an earlier run: reused)" if built else ""
        note(f"{output} in {time.monotonic() - started:.1f}s{reused}")
        stack.wait_healthy()
        note(f"API {stack.base_url}, Prefect UI {stack.prefect_ui}")

        receiver_context = webhook_receiver(created["webhook_secret"])
        db = Database(f"sqlite:///{data_dir / 'offpeak.db'}")
        try:
            with receiver_context as receiver:
                register_endpoint(env, stack, receiver)
                own = receiver.url("/own")
                singles = send_singles(stack.base_url, own)
                header("4. Two batches (steps 2 and 3: requests with a custom_id, then a batch)")
                rng = random.Random(2024)
                batches = [
                    send_batch(stack.base_url, "newsletter", 100, rng, bad=False, webhook=own),
                    send_batch(stack.base_url, "support", 90, rng, bad=True, webhook=own),
                ]
                show_day_plan(batches)
                wait_done(stack, db, batches, singles)
                show_results(stack.base_url, batches, singles)
                show_webhooks(receiver, [*singles, *(b.id for b in batches)])
            summary(stack, db, data_dir, created["id"])
            header("10. Stop the stack (SIGINT, as Ctrl-C)")
            wait_flow_runs(stack, db, created["id"])
        finally:
            db.dispose()
        started = time.monotonic()
        code = stack.stop()
        if code != 0:
            raise DemoError(f"offpeak serve exited with code {code}:\n{tail(stack.log)}")
        note(f"stopped in {time.monotonic() - started:.1f}s, exit code 0")


def _terminated(signum: int, _frame: object) -> None:
    print("\ndemo terminated", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: the stack stops


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    try:
        run(Path.cwd() / DATA_DIR, Path.cwd() / KEEP_DIR)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    except (DemoError, OffpeakError, requests.RequestException, OSError, ValueError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"\ndemo failed: an answer had no {exc} field", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
