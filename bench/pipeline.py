"""The whole pipeline against raw vLLM: chat requests from submission to the last JSONL
line through `offpeak serve`, and the same prompts through one `vllm.LLM.chat` call.

For each size (default 2,000, 10,000 and 40,000 requests), in one run:

(a) offpeak: `offpeak serve` (Prefect server, workers, API; the `immediate` policy, the
    default scheduler interval of 30 s, jobs as large as the largest size) on a fresh
    data folder. The requests go in as a data engineer sends a batch of this size: one
    JSONL dataset (`POST /v1/datasets`, through offpeak's client; `--submit singles`
    posts them one by one to `POST /v1/requests` and then makes them a batch). The
    clock runs from the submission until `GET /v1/batches/{id}/results` has given its
    last line. While it waits, this process reads the state database every second to
    see when the last request was sealed and when the job was opened, launched,
    started, ended and the batch published; the job's own figures (engine start-up,
    wall time) come from its row.
(b) raw vLLM: the same conversations and sampling parameters (bench/inference.py's mix,
    a seed per request) through `LLM(tiny-chat weights, the same engine arguments)` and
    one `LLM.chat`, its wall time from constructing the engine to the last output (it
    runs after the stack has stopped, so the two never share the CPU).

It prints both wall times and output tokens/s, their ratios, and where offpeak's extra
time goes; the target is >= 0.8 of raw vLLM's throughput once the batch is large enough
to amortise the engine's start-up.

    .venv/bin/python bench/pipeline.py [--sizes 2000,10000,40000] [--submit dataset|singles]
        [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.8
# Seconds between reads of the state database: often enough for stages of seconds, and
# cheap next to the engine's two cores (at 0.2 s, counting 40,000 rows took ~8% of a core).
POLL = 1.0
TIMEOUT = 3600.0
KEEP_DIR = ROOT / ".offpeak"  # the tiny model and vLLM's cache, shared with the demo
SETTINGS = {
    "OFFPEAK_SCHEDULER_POLICY": "immediate",
    "OFFPEAK_SEAL_INTERVAL": "0.5",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
}


def _inference_bench() -> Any:
    """bench/inference.py: its conversations and its raw vLLM run."""
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "bench/inference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- (a) offpeak ----------------------------------------------------------------------------


class Watch:
    """When each stage was first seen in the state database (monotonic seconds)."""

    # Stages of the batch's requests; then of its jobs, whose ids are read again only every
    # JOBS_EVERY seconds: a query over the requests each second would cost this process a
    # few % of a core while the engine generates (40,000 rows of them at the largest size).
    QUERIES: ClassVar[dict[str, str]] = {
        "sealed": "SELECT count(*) = 0 FROM requests WHERE key_id = :key AND segment IS NULL",
        "opened": "SELECT count(*) > 0 FROM jobs j JOIN requests r ON r.job_id = j.id "
        "WHERE r.key_id = :key",
        "launched": "SELECT count(*) > 0 FROM jobs WHERE launched_at IS NOT NULL AND id IN {jobs}",
        "started": "SELECT count(*) > 0 FROM jobs WHERE started_at IS NOT NULL AND id IN {jobs}",
        # The runner sets ended_at once the last chunk's results are recorded.
        "ran": "SELECT count(*) > 0 AND sum(ended_at IS NULL) = 0 FROM jobs WHERE id IN {jobs}",
        "settled": "SELECT count(*) > 0 AND sum(status IN ('created', 'launched', 'running')) "
        "= 0 FROM jobs WHERE id IN {jobs}",
        "published": "SELECT count(*) > 0 FROM batches WHERE id = :batch AND results_key "
        "IS NOT NULL",
    }
    JOBS_EVERY = 10.0

    def __init__(self, path: Path, key_id: str) -> None:
        self.path, self.key_id = path, key_id
        self.seen: dict[str, float] = {}
        self._jobs: list[str] = []
        self._jobs_read = 0.0

    def poll(self, batch_id: str | None) -> None:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            if "opened" in self.seen and time.monotonic() - self._jobs_read > self.JOBS_EVERY:
                rows = connection.execute(
                    "SELECT DISTINCT job_id FROM requests WHERE key_id = ? AND job_id IS NOT NULL",
                    (self.key_id,),
                )
                self._jobs, self._jobs_read = [row[0] for row in rows], time.monotonic()
            for stage, sql in self.QUERIES.items():
                if stage in self.seen or (batch_id is None and stage != "sealed"):
                    continue
                if "{jobs}" in sql:
                    if not self._jobs:
                        continue
                    sql = sql.format(jobs=f"({', '.join('?' * len(self._jobs))})")
                    found = connection.execute(sql, self._jobs).fetchone()[0]
                else:
                    params = {"key": self.key_id, "batch": batch_id}
                    found = connection.execute(sql, params).fetchone()[0]
                if found:
                    self.seen[stage] = time.monotonic()
        except sqlite3.OperationalError:  # locked by a writer: the next poll sees it
            pass
        finally:
            connection.close()


def request_payload(conv: Any, model: str, temperature: float, index: int) -> dict[str, Any]:
    return {
        "request_body": {
            "model": model,
            "messages": conv.messages,
            "max_tokens": conv.max_tokens,
            "temperature": temperature,
            "seed": conv.seed,
        },
        "metadata": {"n": index},
    }


def submit_singles(client: httpx.Client, base: str, convs: list[Any], bench: Any) -> str:
    """One `POST /v1/requests` per conversation, then one `POST /v1/batches`: the batch id."""
    ids = []
    for index, conv in enumerate(convs):
        response = client.post(
            f"{base}/requests", json=request_payload(conv, bench.MODEL, bench.TEMPERATURE, index)
        )
        response.raise_for_status()
        ids.append(response.json()["id"])
    response = client.post(f"{base}/batches", json={"requests_ids": ids})
    response.raise_for_status()
    return str(response.json()["id"])


def submit_dataset(api_url: str, secret: str, convs: list[Any], bench: Any) -> str:
    """The conversations as one JSONL dataset (a row each: its number, messages,
    max_tokens and seed), sent with offpeak's client: the batch id."""
    from offpeak.client.http import OffpeakClient
    from offpeak.schemas import DatasetMapping

    mapping = DatasetMapping(
        model=bench.MODEL,
        messages_column="messages",
        id_column="n",
        parameter_columns=["max_tokens", "seed"],
        temperature=bench.TEMPERATURE,
        format="jsonl",
    )
    with tempfile.TemporaryDirectory(prefix="offpeak-pipeline-dataset-") as tmp:
        path = Path(tmp) / "conversations.jsonl"
        with path.open("w") as out:
            for index, conv in enumerate(convs):
                row = {"n": index, "messages": conv.messages}
                out.write(json.dumps({**row, "max_tokens": conv.max_tokens, "seed": conv.seed}))
                out.write("\n")
        with OffpeakClient(api_url, secret) as client:
            return client.submit_dataset(path, mapping).id


def run_offpeak(stack: Any, env: dict[str, str], secret: str, key_id: str, convs: list[Any],
                bench: Any, submit: str) -> dict[str, Any]:  # fmt: skip
    """One batch through the running stack; wall time, tokens, the stages' times."""
    base = f"http://127.0.0.1:{stack.api_port}/v1"
    headers = {"X-API-Key": secret}
    watch = Watch(Path(env["OFFPEAK_DATA_DIR"]) / "offpeak.db", key_id)
    with httpx.Client(headers=headers, timeout=60) as client:
        start = time.monotonic()
        if submit == "dataset":
            batch_id = submit_dataset(base.removesuffix("/v1"), secret, convs, bench)
        else:
            batch_id = submit_singles(client, base, convs, bench)
        batched = time.monotonic()
        while "published" not in watch.seen:
            stack.check_alive()
            if time.monotonic() - start > TIMEOUT:
                raise SystemExit(f"batch {batch_id} not published in {TIMEOUT:.0f}s")
            watch.poll(batch_id)
            time.sleep(POLL)
        tokens = lines = 0
        with client.stream("GET", f"{base}/batches/{batch_id}/results") as results:
            results.raise_for_status()
            for line in results.iter_lines():
                if line:
                    row = json.loads(line)
                    lines += 1
                    usage = (row.get("result_body") or {}).get("usage") or {}
                    tokens += int(usage.get("completion_tokens") or 0)
        end = time.monotonic()
    if lines != len(convs):
        raise SystemExit(f"batch {batch_id}: {lines} result lines for {len(convs)} requests")
    jobs = job_rows(watch.path, key_id)
    return {
        "wall": end - start,
        "load": os.getloadavg()[1],  # the machine is shared: its 5-minute load average
        "tokens": tokens,
        "stages": stages(start, batched, watch.seen, end, jobs),
        "jobs": len(jobs),
    }


def job_rows(path: Path, key_id: str) -> list[dict[str, Any]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(
            "SELECT * FROM jobs WHERE id IN (SELECT job_id FROM requests WHERE key_id = ?)",
            (key_id,),
        )
        return [dict(row) for row in rows]
    finally:
        connection.close()


def stages(
    start: float,
    batched: float,
    seen: dict[str, float],
    end: float,
    jobs: list[dict[str, Any]],
) -> dict[str, float]:
    """Where the wall time went, in order (seconds, each from the end of the one before):
    stage times as this process saw them in the database (every POLL seconds), the
    job's engine start-up as the runner measured it."""
    startup = max((j["startup_seconds"] or 0.0) for j in jobs) if jobs else 0.0
    opened = seen.get("opened", batched)
    launched = seen.get("launched", opened)
    started = seen.get("started", launched)
    ran = seen.get("ran", started)
    settled = seen.get("settled", ran)
    published = seen.get("published", settled)
    return {
        "submission (to the batch created)": batched - start,
        "sealing and scheduling (to job opened)": opened - batched,
        "  of which sealing (to last request sealed)": max(
            seen.get("sealed", batched) - batched, 0.0
        ),
        "job launch (opened -> flow run created)": launched - opened,
        "flow-run start (to the runner holding the job)": started - launched,
        "engine start": startup,
        "generation (to last result, less engine start)": ran - started - startup,
        "job end (last result -> job completed: carbon)": settled - ran,
        "publishing (job completed -> JSONL written)": published - settled,
        "fetching the JSONL": end - published,
    }


# --- (b) raw vLLM ---------------------------------------------------------------------------


def run_raw(bench: Any, convs: list[Any], models_dir: Path) -> dict[str, Any]:
    from offpeak.catalog.models import ModelRegistry
    from offpeak.config import PACKAGED_MODELS
    from offpeak.engine.tiny import ensure_tiny
    from offpeak.engine.vllm_engine import ENGINE_DEFAULTS
    from offpeak.engine.weights import BUILTIN

    spec = ModelRegistry.load(PACKAGED_MODELS).get(bench.MODEL)
    weights = str(ensure_tiny(models_dir / (spec.weights or "").removeprefix(BUILTIN)))
    # Shown, not counted: raw vLLM's clock starts at LLM(), after the import, where
    # offpeak's engine start includes it (the first size pays it, once per process).
    started = time.monotonic()
    import vllm  # noqa: F401

    imported = time.monotonic() - started
    measured = bench.run_bare(weights, {**ENGINE_DEFAULTS, **spec.engine}, convs)
    return {
        "import": imported,
        "wall": measured.start + measured.generate,
        "load": os.getloadavg()[1],
        "start": measured.start,
        "generate": measured.generate,
        "tokens": sum(measured.tokens),
    }


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="2000,10000,40000", help="comma-separated request counts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--submit",
        choices=("dataset", "singles"),
        default="dataset",
        help="one JSONL dataset, or one POST per request and then a batch",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data folder and the stack's log"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from offpeak.demo.stack import cli, serve

    bench = _inference_bench()
    from offpeak.engine.vllm_engine import ENV_DEFAULTS

    os.environ.update(
        {
            **ENV_DEFAULTS,  # in-process engine core, 1 GiB KV cache: as ChatEngine sets them
            "HF_HUB_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(KEEP_DIR / "cache" / "vllm"),
            "VLLM_LOGGING_LEVEL": "ERROR",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    foreign = ("OFFPEAK_DATABASE_URL", "OFFPEAK_STORAGE_URL", "PREFECT_API_URL")
    ours: dict[int, dict[str, Any]] = {}
    with (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="offpeak-pipeline-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="offpeak-pipeline-")
    ) as tmp:
        if args.keep:
            print(f"  data folder and log kept in {tmp}", file=sys.stderr)
        data = Path(tmp) / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in foreign}
        env.update(SETTINGS)
        # One job per batch, the largest included: an operator running large batches sets
        # jobs this large, so one engine start serves the whole batch (at the default,
        # 5,000 requests a job, each 5,000 requests pay one).
        env["OFFPEAK_JOB_MAX_REQUESTS"] = str(max(sizes))
        env["OFFPEAK_DATA_DIR"] = str(data)
        env["OFFPEAK_MODELS_DIR"] = str(KEEP_DIR / "models")
        env["OFFPEAK_CACHE_DIR"] = str(KEEP_DIR / "cache")
        cli(env, "db", "upgrade")
        cli(env, "models", "build-tiny")
        with serve(env, Path(tmp) / "serve.log") as stack:
            stack.wait_healthy()
            for n in sizes:
                created = json.loads(
                    cli(env, "keys", "create", "--name", f"bench-{n}", "--credits", "100", "--json")
                )
                convs = bench.conversations(n, args.seed + n)
                ours[n] = run_offpeak(
                    stack, env, created["key"], created["id"], convs, bench, args.submit
                )
                print(f"  offpeak {n}: {json.dumps(ours[n])}", file=sys.stderr)
    raw = {}
    for n in sizes:
        raw[n] = run_raw(bench, bench.conversations(n, args.seed + n), KEEP_DIR / "models")
        print(f"  raw vLLM {n}: {raw[n]['wall']:.1f} s", file=sys.stderr)
    print(f"offpeak's submission: {args.submit}")
    report(sizes, ours, raw)


def report(
    sizes: list[int], ours: dict[int, dict[str, Any]], raw: dict[int, dict[str, Any]]
) -> None:
    print(
        f"{'requests':>8} {'offpeak s':>10} {'raw s':>8} {'wall x':>7} "
        f"{'offpeak tok/s':>14} {'raw tok/s':>10} {'tok/s ratio':>12} {'raw gen-only':>13}"
    )
    reached = None
    for n in sizes:
        a, b = ours[n], raw[n]
        a_rate, b_rate = a["tokens"] / a["wall"], b["tokens"] / b["wall"]
        ratio = a_rate / b_rate
        if ratio >= TARGET and reached is None:
            reached = n
        print(
            f"{n:>8} {a['wall']:>10.1f} {b['wall']:>8.1f} {a['wall'] / b['wall']:>7.2f} "
            f"{a_rate:>14.0f} {b_rate:>10.0f} {ratio:>12.2f} {b['tokens'] / b['generate']:>13.0f}"
        )
    for n in sizes:
        print(f"where offpeak's {ours[n]['wall']:.1f} s went at {n} requests "
              f"({ours[n]['jobs']} job(s), load {ours[n]['load']:.1f}; raw vLLM: load "
              f"{raw[n]['load']:.1f}, {raw[n]['import']:.1f} s import (once, not counted), "
              f"{raw[n]['start']:.1f} s engine start, "
              f"{raw[n]['generate']:.1f} s generation):")  # fmt: skip
        for stage, seconds in ours[n]["stages"].items():
            print(f"  {stage:<48} {seconds:7.1f} s")
    print(
        f"target: >= {TARGET} of raw vLLM's output tokens/s: "
        + (f"reached at {reached:,} requests" if reached else "not reached at these sizes")
    )


if __name__ == "__main__":
    main()
