"""Inference and publishing benchmark: offpeak's paths against bare baselines, side by side.

One run measures two things on the same machine, in one process:

1. Inference. The same conversations (a fixed-seed mix: short, medium and long user
   messages, a system message or not, some multi-turn; max_tokens uniform in 32-128;
   temperature 0.7; a sampling seed per request, so both sides draw the very same
   tokens) go (a) through one bare ``vllm.LLM.chat(conversations, [SamplingParams per
   request], use_tqdm=False)`` call, and (b) through offpeak's path: requests inserted
   and sealed into segments of a fresh SQLite database and local store and a job opened
   (both untimed), then ``JobRunner.run`` timed: bodies read from segments, the engine
   run chunk by chunk, each chunk's result Parquet written and applied to the database.
   Both engines get the tiny-chat entry's engine arguments from the packaged models.yaml
   over offpeak's engine defaults (what ChatEngine passes to ``vllm.LLM``); each starts
   on its own and is closed before the next, and start-up is reported apart from
   generation. Rounds alternate which side goes first. It prints output tokens/s of
   both and the ratio b/a (target >= 0.90), and checks both generated the same tokens.

2. Publishing. A batch of 100,000 finished requests (bodies in segments, one result
   Parquet per chunk, state rows as a job leaves them; built directly, no engine) is
   published as JSONL by (a) ``publish_batch``, and (b) the same objects, as a polars
   DataFrame, are written by ``write_ndjson``; rounds alternate. It prints MB/s of both
   and the ratio a/b (target >= 0.5), and checks every published line against the
   request object built the slow way (pydantic, one by one).

Engine start-up, vLLM's import, and all set-up are untimed. Exit status 1 if a
published line differs from its request object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import PACKAGED_MODELS, Settings, load_settings
from offpeak.engine import EngineResult
from offpeak.engine.results import Choice, chat_completion
from offpeak.engine.tiny import CORPUS, ensure_tiny
from offpeak.engine.vllm_engine import ENGINE_DEFAULTS, ENV_DEFAULTS
from offpeak.engine.weights import BUILTIN
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import publish_batch, results_key
from offpeak.publish.objects import request_objects
from offpeak.run.chunk_files import chunk_key, encode_results, outcomes, read_results, result_rows
from offpeak.run.launch import open_job, read_manifest
from offpeak.run.runner import Engine, JobRunner, open_engine, split
from offpeak.schemas import BatchCreate, ErrorInfo, RequestCreate
from offpeak.state.batches import create_batch
from offpeak.state.db import Database
from offpeak.state.jobs import apply_outcomes
from offpeak.state.keys import create_key
from offpeak.state.models import Batch
from offpeak.state.requests import insert_requests, list_requests, new_request_row
from offpeak.storage import LocalStore

MODEL = "tiny-chat"
TEMPERATURE = 0.7
MAX_TOKENS = (32, 128)
PROMPT_WORDS = 200  # about 300 tokens: prompt + max_tokens fit the 512-token context
INFERENCE_TARGET = 0.90
PUBLISH_TARGET = 0.5
INSERT_CHUNK = 5_000
FAIL_EVERY = 50  # one request in 50 of the published batch failed
MB = 1_000_000

WORDS = CORPUS.read_text(encoding="utf-8").split()

# --- the conversations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, str]]
    max_tokens: int
    seed: int


def _text(rng: random.Random, words: int) -> str:
    start = rng.randrange(len(WORDS))
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(words))


def conversations(count: int, seed: int) -> list[Conversation]:
    """``count`` conversations of mixed sizes; the same ``seed`` gives the same ones.

    A third of the user messages are short, a third medium, a third long; 60% have a
    system message, 30% are multi-turn; no prompt exceeds PROMPT_WORDS words, so no
    answer is cut short by the context on either side.
    """
    rng = random.Random(seed)
    return [_conversation(rng, index) for index in range(count)]


def _conversation(rng: random.Random, seed: int) -> Conversation:
    shape: list[tuple[str, tuple[int, int]]] = []
    if rng.random() < 0.6:
        shape.append(("system", (4, 50)))
    for turn in range(rng.choices((1, 2, 3), weights=(70, 20, 10))[0]):
        if turn:
            shape.append(("assistant", (3, 25)))
        shape.append(("user", rng.choice(((2, 12), (10, 40), (30, 100)))))
    messages = []
    left = PROMPT_WORDS
    for role, (low, high) in shape:
        words = max(1, min(rng.randint(low, high), left))
        left -= words
        messages.append({"role": role, "content": _text(rng, words)})
    return Conversation(messages, rng.randint(*MAX_TOKENS), seed)


def request_create(conv: Conversation, metadata: dict[str, Any]) -> RequestCreate:
    return RequestCreate.model_validate(
        {
            "request_body": {
                "model": MODEL,
                "messages": conv.messages,
                "max_tokens": conv.max_tokens,
                "temperature": TEMPERATURE,
                "seed": conv.seed,
            },
            "metadata": metadata,
        }
    )


# --- inference: (a) bare vLLM, (b) offpeak's JobRunner ------------------------------------


@dataclass
class Measured:
    """One run of one side: seconds (wall and this process's CPU) and output tokens."""

    start: float
    generate: float
    cpu: float
    tokens: list[int]  # per conversation, in input order


@dataclass
class Side:
    name: str
    runs: list[Measured] = field(default_factory=list)

    def total(self, attribute: str) -> float:
        return sum(getattr(run, attribute) for run in self.runs)

    @property
    def output_tokens(self) -> int:
        return sum(sum(run.tokens) for run in self.runs)

    @property
    def tokens_per_s(self) -> float:
        seconds = self.total("generate")
        return self.output_tokens / seconds if seconds else 0.0

    @property
    def best_tokens_per_s(self) -> float:
        """Of the fastest round: other processes on the machine only ever slow a round."""
        return max((sum(run.tokens) / run.generate for run in self.runs), default=0.0)


def run_bare(weights: str, engine_args: dict[str, Any], convs: Sequence[Conversation]) -> Measured:
    from vllm import LLM, SamplingParams
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    started = time.perf_counter()
    llm = LLM(model=weights, **engine_args)
    ready, cpu = time.perf_counter(), time.process_time()
    outputs = llm.chat(
        [c.messages for c in convs],
        [
            SamplingParams(temperature=TEMPERATURE, max_tokens=c.max_tokens, seed=c.seed)
            for c in convs
        ],
        use_tqdm=False,
    )
    done, cpu = time.perf_counter(), time.process_time() - cpu
    tokens = [len(output.outputs[0].token_ids) for output in outputs]
    llm.llm_engine.engine_core.shutdown()  # as ChatEngine.close does
    del llm, outputs
    cleanup_dist_env_and_memory()
    gc.collect()
    return Measured(ready - started, done - ready, cpu, tokens)


class TimedStart:
    """An engine factory that keeps the CPU time its start took."""

    def __init__(self, make: Callable[[], Engine]) -> None:
        self.make = make
        self.cpu = 0.0

    def __call__(self) -> Engine:
        started = time.process_time()
        engine = self.make()
        self.cpu += time.process_time() - started
        return engine


def run_offpeak(
    settings: Settings, registry: ModelRegistry, convs: Sequence[Conversation]
) -> Measured:
    """The same through a job, in a fresh database and store (set up untimed)."""
    db = Database.migrated(settings.database_url)
    store = LocalStore(settings.data_dir / "objects")
    key, _ = create_key(db, "bench", 1_000)
    created = now()
    rows = [
        new_request_row(key.id, request_create(conv, {"n": n}), created)
        for n, conv in enumerate(convs)
    ]
    insert_requests(db, rows)
    seal_all(db, store, settings.seal_rows)
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=len(rows), deployment="bench", at=now())
    assert job is not None and job.request_count == len(rows)
    start = TimedStart(lambda: open_engine(settings, registry, group.engine_model))
    runner = JobRunner(db, store, registry, settings, start)
    try:
        cpu = time.process_time()
        report = runner.run(job.id)
        cpu = time.process_time() - cpu - start.cpu
    finally:
        runner.close()
        gc.collect()
    by_id = {
        row.id: row.completion_tokens
        for index in range(report.chunks)
        for row in read_results(store, chunk_key(job.id, index))
    }
    db.dispose()
    tokens = [by_id[row["id"]] for row in rows]
    assert sum(tokens) == report.completion_tokens
    # As JobReport.tokens_per_s would be without the engine's start-up.
    generate = report.wall_seconds - report.engine_start_seconds
    return Measured(report.engine_start_seconds, generate, cpu, tokens)


def job_settings(base: Settings, data_dir: Path, chunk_size: int | None) -> Settings:
    """Settings of a fresh data folder sharing the built model and vLLM's cache."""
    return load_settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'offpeak.db'}",
        storage_url=(data_dir / "objects").resolve().as_uri(),
        models_dir=base.models_dir,
        cache_dir=base.cache_dir,
        models_path=PACKAGED_MODELS,
        **({"chunk_size": chunk_size} if chunk_size else {}),
    )


@dataclass
class InferenceResult:
    bare: Side
    ours: Side
    conversations: int
    messages: int
    identical: int  # requests with the same completion length on both sides
    import_seconds: float
    chunk_size: int
    engine_args: dict[str, Any]


def bench_inference(args: argparse.Namespace, base: Settings, work: Path) -> InferenceResult:
    registry = ModelRegistry.load(PACKAGED_MODELS)
    spec = registry.get(MODEL)
    built_in = (spec.weights or "").removeprefix(BUILTIN)
    weights = str(ensure_tiny(base.models_dir / built_in))
    engine_args = {**ENGINE_DEFAULTS, **spec.engine}
    environment = {
        **ENV_DEFAULTS,  # in-process engine core, 1 GiB KV cache: as ChatEngine sets them
        "HF_HUB_OFFLINE": "1",
        "VLLM_CACHE_ROOT": str(base.cache_dir / "vllm"),
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
    for name, value in environment.items():
        os.environ.setdefault(name, value)
    started = time.perf_counter()
    import vllm  # noqa: F401  (paid once, before either side)

    import_seconds = time.perf_counter() - started
    convs = conversations(args.conversations, args.seed)
    bare, ours = Side("(a) bare vLLM LLM.chat"), Side("(b) offpeak JobRunner")
    chunk_size = args.chunk_size or base.chunk_size
    identical = 0
    for number in range(args.rounds):
        sides = (bare, ours) if number % 2 == 0 else (ours, bare)
        for side in sides:
            if side is bare:
                run = run_bare(weights, engine_args, convs)
            else:
                data_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work))
                run = run_offpeak(job_settings(base, data_dir, args.chunk_size), registry, convs)
                shutil.rmtree(data_dir, ignore_errors=True)
            side.runs.append(run)
            print(
                f"inference round {number + 1}/{args.rounds} {side.name}: start {run.start:.1f}s, "
                f"{sum(run.tokens):,} tokens in {run.generate:.1f}s "
                f"({sum(run.tokens) / run.generate:,.0f}/s, CPU {run.cpu:.1f}s)",
                flush=True,
            )
        identical += sum(
            a == b for a, b in zip(bare.runs[-1].tokens, ours.runs[-1].tokens, strict=True)
        )
    return InferenceResult(
        bare,
        ours,
        len(convs),
        sum(len(c.messages) for c in convs),
        identical,
        import_seconds,
        chunk_size,
        engine_args,
    )


# --- publishing: (a) publish_batch, (b) polars write_ndjson ------------------------------


def _completion(rng: random.Random, request_id: str) -> dict[str, Any]:
    text = _text(rng, rng.randint(3, 60))
    return chat_completion(
        request_id=request_id,
        model=MODEL,
        created=now(),
        prompt_token_ids=range(rng.randint(20, 300)),
        choices=[Choice(text, range(len(text) // 4), rng.choice(("stop", "length")))],
    )


def _result(rng: random.Random, request_id: str, failed: bool) -> EngineResult:
    if failed:
        error = ErrorInfo(code="context_length_exceeded", message="the prompt is too long")
        return EngineResult(request_id, None, error, 600, 0)
    body = _completion(rng, request_id)
    usage = body["usage"]
    return EngineResult(request_id, body, None, usage["prompt_tokens"], usage["completion_tokens"])


def finished_batch(db: Database, store: LocalStore, rows: int, chunk_size: int) -> Batch:
    """A batch of ``rows`` requests as a finished job leaves it: bodies in segments, one
    result Parquet per chunk, state rows completed (one in FAIL_EVERY failed)."""
    rng = random.Random(1)
    registry = ModelRegistry.load(PACKAGED_MODELS)
    key, _ = create_key(db, "bench", 1_000_000)
    convs = conversations(min(rows, 2_000), seed=1)
    created = now()
    ids: list[str] = []
    for start in range(0, rows, INSERT_CHUNK):
        chunk = [
            new_request_row(
                key.id,
                request_create(convs[i % len(convs)], {"custom_id": f"row-{i:07d}", "n": i}),
                created,
            )
            for i in range(start, min(rows, start + INSERT_CHUNK))
        ]
        insert_requests(db, chunk)
        ids += [row["id"] for row in chunk]
    seal_all(db, store, Settings.model_fields["seal_rows"].default)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=ids), created)
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=rows, deployment="bench", at=now())
    assert job is not None and job.request_count == rows
    for index, chunk_rows in enumerate(split(read_manifest(store, job), chunk_size)):
        results = [
            _result(rng, row.id, (index * chunk_size + n) % FAIL_EVERY == 0)
            for n, row in enumerate(chunk_rows)
        ]
        result_key = chunk_key(job.id, index)
        written = result_rows(results, {r.id: MODEL for r in chunk_rows}, registry)
        store.create(result_key, encode_results(written))
        apply_outcomes(db, job.id, result_key, outcomes(written), now())
    return batch


def slow_objects(db: Database, store: LocalStore, batch: Batch) -> Iterator[dict[str, Any]]:
    """The batch's request objects built one by one with pydantic (the reference)."""
    after: str | None = None
    while page := list_requests(db, batch.key_id, after=after, limit=1000, batch_id=batch.id):
        for obj in request_objects(store, page):
            yield obj.model_dump(mode="json")
        after = page[-1].id


@dataclass
class Timed:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    size: int = 0

    def add(self, run: Callable[[], object]) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        run()
        self.seconds.append(time.perf_counter() - started)
        self.cpu.append(time.process_time() - cpu)

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / statistics.median(self.seconds)


@dataclass
class PublishResult:
    rows: int
    ours: Timed
    polars: Timed
    equal: int


def bench_publish(args: argparse.Namespace, base: Settings, work: Path) -> PublishResult:
    import polars as pl

    folder = Path(tempfile.mkdtemp(prefix="publish-", dir=work))
    db = Database.migrated(f"sqlite:///{folder / 'offpeak.db'}")
    store = LocalStore(folder / "objects")
    chunk_size = args.chunk_size or base.chunk_size
    print(f"publishing: building a finished batch of {args.publish_rows:,} requests", flush=True)
    batch = finished_batch(db, store, args.publish_rows, chunk_size)
    path = folder / "objects" / results_key(batch)
    ours, theirs = Timed(), Timed()
    ours.add(lambda: publish_batch(db, store, batch))  # marks the batch completed, once
    ours.size = path.stat().st_size

    print("publishing: checking every line against the slow path", flush=True)
    equal = lines = 0
    with path.open("rb") as published:
        for line, expected in zip(published, slow_objects(db, store, batch), strict=True):
            equal += json.loads(line) == expected
            lines += 1
    frame = pl.read_ndjson(path, infer_schema_length=None)  # the same objects, as a frame
    out = folder / "polars.jsonl"
    for number in range(args.publish_rounds):
        print(f"publishing round {number + 1}/{args.publish_rounds}", flush=True)
        if number:  # the batch is already published: this writes the same file again
            ours.add(lambda: publish_batch(db, store, batch))
        theirs.add(lambda: frame.write_ndjson(out))
    theirs.size = out.stat().st_size
    db.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    return PublishResult(lines, ours, theirs, equal)


# --- the report --------------------------------------------------------------------------------


def print_inference(r: InferenceResult) -> None:
    rounds = len(r.bare.runs)
    print(
        f"\ninference: {r.conversations:,} conversations ({r.messages:,} messages), "
        f"max_tokens {MAX_TOKENS[0]}-{MAX_TOKENS[1]}, temperature {TEMPERATURE}, a seed per "
        f"request; {rounds} round(s) per side, alternating first; chunk size {r.chunk_size}; "
        f"{os.cpu_count()} CPUs\nengine: "
        + " ".join(f"{k}={v}" for k, v in r.engine_args.items())
        + f" (vllm import {r.import_seconds:.1f}s, untimed)"
    )
    print(
        f"{'path':<26}{'start s':>9}{'generate s':>12}{'CPU s':>8}{'out tokens':>12}"
        f"{'tokens/s':>10}{'best':>8}"
    )
    for side in (r.bare, r.ours):
        print(
            f"{side.name:<26}{side.total('start'):>9.1f}{side.total('generate'):>12.1f}"
            f"{side.total('cpu'):>8.1f}{side.output_tokens:>12,}{side.tokens_per_s:>10,.0f}"
            f"{side.best_tokens_per_s:>8,.0f}"
        )
    ratio = r.ours.tokens_per_s / r.bare.tokens_per_s if r.bare.tokens_per_s else 0.0
    best = r.ours.best_tokens_per_s / r.bare.best_tokens_per_s if r.bare.runs else 0.0
    verdict = "ok" if ratio >= INFERENCE_TARGET else "BELOW TARGET"
    print(
        f"{'ratio b/a (tokens/s)':<26}{'':>41}{ratio:>10.2f}{best:>8.2f}"
        f"   target >= {INFERENCE_TARGET}: {verdict}"
    )
    print(
        f"{'same completion lengths':<26}{r.identical:,}/{r.conversations * rounds:,} "
        "requests (vLLM's per-request seed: same seed, same tokens)"
    )


def print_publish(r: PublishResult) -> None:
    rounds = len(r.polars.seconds)
    print(
        f"\npublishing: a batch of {r.rows:,} finished requests (1 in {FAIL_EVERY} failed) "
        f"as JSONL; median of {rounds} round(s), alternating"
    )
    print(f"{'writer':<26}{'seconds':>9}{'CPU s':>8}{'MB':>9}{'MB/s':>9}")
    writers = (("(a) offpeak publish_batch", r.ours), ("(b) polars write_ndjson", r.polars))
    for name, timed in writers:
        print(
            f"{name:<26}{statistics.median(timed.seconds):>9.2f}"
            f"{statistics.median(timed.cpu):>8.2f}{timed.size / MB:>9.1f}{timed.mb_per_s:>9.0f}"
        )
    ratio = r.ours.mb_per_s / r.polars.mb_per_s if r.polars.mb_per_s else 0.0
    verdict = "ok" if ratio >= PUBLISH_TARGET else "BELOW TARGET"
    print(f"{'ratio a/b (MB/s)':<26}{ratio:>9.2f}   target >= {PUBLISH_TARGET}: {verdict}")
    for name, timed in writers:
        print(f"{name[:3] + ' each round, s':<26}" + " ".join(f"{s:.2f}" for s in timed.seconds))
    print(f"{'':<26}(a)'s first round writes a new object; later ones replace the file it wrote")
    print(f"{'lines equal to objects':<26}{r.equal:,}/{r.rows:,} (RequestObject, parsed JSON)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the conversation generator")
    parser.add_argument("--rounds", type=int, default=3, help="inference runs per side")
    parser.add_argument(
        "--chunk-size", type=int, help="requests per job chunk (default: OFFPEAK_CHUNK_SIZE)"
    )
    parser.add_argument("--publish-rows", type=int, default=100_000)
    parser.add_argument("--publish-rounds", type=int, default=3, help="publishing runs per side")
    parser.add_argument("--only", choices=("inference", "publish"), help="run one part only")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    base = load_settings()
    work = Path(tempfile.mkdtemp(prefix="offpeak-bench-inference-"))
    inference = publishing = None
    try:
        if args.only != "publish":
            inference = bench_inference(args, base, work)
        if args.only != "inference":
            publishing = bench_publish(args, base, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if inference:
        print_inference(inference)
    if publishing:
        print_publish(publishing)
    return 1 if publishing and publishing.equal != publishing.rows else 0


if __name__ == "__main__":
    sys.exit(main())
