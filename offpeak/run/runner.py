"""Running a job: its manifest, chunk by chunk, through one engine started once."""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import Settings
from offpeak.engine import EngineRequest, EngineResult
from offpeak.engine.weights import resolve_weights
from offpeak.errors import ObjectExists
from offpeak.ingest.segments import read_segment
from offpeak.run.chunk_files import chunk_key, encode_results, outcomes, read_results, result_rows
from offpeak.run.launch import read_manifest
from offpeak.run.lease import JobLease
from offpeak.schemas import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ErrorCode,
    ErrorInfo,
    ManifestRow,
    ResultRow,
)
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.models import Job
from offpeak.storage import ObjectStore

# The request body each kind of model takes, as stored in the segments.
REQUEST_BODIES: dict[str, type[ChatCompletionRequest] | type[EmbeddingRequest]] = {
    "chat": ChatCompletionRequest,
    "embed": EmbeddingRequest,
}


class Engine(Protocol):
    def submit(self, requests: Sequence[EngineRequest]) -> Callable[[], list[EngineResult]]:
        """Queue ``requests``; the call returned waits for their results, in input order."""
        ...

    def close(self) -> None: ...


def open_engine(settings: Settings, registry: ModelRegistry, engine_model: str) -> Engine:
    """Start the engine that serves ``engine_model``, chosen by its kind (building
    built-in weights if needed)."""
    spec = registry.get(engine_model)
    weights = resolve_weights(spec.weights or "", settings.models_dir)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(settings.cache_dir / "vllm"))
    if spec.kind == "embed":
        from offpeak.engine.vllm_embed import EmbedEngine

        return EmbedEngine(weights, spec.engine)
    from offpeak.engine.vllm_engine import ChatEngine

    return ChatEngine(weights, spec.engine)


def split(manifest: Sequence[ManifestRow], size: int) -> list[Sequence[ManifestRow]]:
    """The job's chunks: fixed by the manifest's order, so a restart finds the same ones."""
    return [manifest[i : i + size] for i in range(0, len(manifest), size)]


@dataclass
class JobReport:
    job_id: str
    chunks: int = 0
    chunks_skipped: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_start_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_seconds if self.wall_seconds else 0.0


class JobRunner:
    """Runs one job; the engine starts at the first chunk that has work."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        registry: ModelRegistry,
        settings: Settings,
        engine_factory: Callable[[], Engine],
        account: Callable[[str], object] | None = None,
    ) -> None:
        """``account(job_id)`` runs once the results are recorded, before the job is
        marked completed (its batches publish only then): the carbon footprint."""
        self.db, self.store, self.registry, self.settings = db, store, registry, settings
        self._engine_factory = engine_factory
        self._account = account
        self._engine: Engine | None = None

    def run(self, job_id: str, progress: Callable[[int, int], None] | None = None) -> JobReport:
        started = time.monotonic()
        job = state.get_job(self.db, job_id)
        report = JobReport(job_id)
        lease = JobLease(self.db, job_id, self.settings.job_lease_seconds)
        lease.take(runner=f"{socket.gethostname()}:{os.getpid()}")
        try:
            self._run_chunks(job, lease, report, progress)
            report.wall_seconds = time.monotonic() - started
            state.update_job(
                self.db,
                job_id,
                ended_at=now(),
                prompt_tokens=report.prompt_tokens,
                completion_tokens=report.completion_tokens,
                wall_seconds=report.wall_seconds,
                startup_seconds=report.engine_start_seconds,
            )
            if self._account is not None:
                lease.check()
                self._account(job_id)
            lease.complete()
        finally:
            lease.release()
        return report

    def _run_chunks(
        self,
        job: Job,
        lease: JobLease,
        report: JobReport,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Each chunk in turn, the next one queued in the engine before this one's results
        are collected: the engine's batch never drains between chunks."""
        chunks = split(read_manifest(self.store, job), self.settings.chunk_size)
        queued: deque[tuple[int, Callable[[], list[ResultRow]]]] = deque()
        for index, chunk in enumerate(chunks):
            lease.check()  # taken over (this run was silent too long): stop here
            queued.append((index, self._start_chunk(job.id, index, chunk, report)))
            # The chunk before is collected once this one is queued; the last on its own.
            while len(queued) > 1 or (queued and index == len(chunks) - 1):
                done, collect = queued.popleft()
                self._record(job.id, done, collect(), lease, report)
                if progress:
                    progress(done + 1, len(chunks))

    def _record(
        self, job_id: str, index: int, rows: list[ResultRow], lease: JobLease, report: JobReport
    ) -> None:
        """A chunk's results, saved in its file, into the state database."""
        lease.check()  # its file is saved: the run that took over applies it
        state.apply_outcomes(self.db, job_id, chunk_key(job_id, index), outcomes(rows), now())
        report.chunks += 1
        report.requests += len(rows)
        report.prompt_tokens += sum(r.prompt_tokens for r in rows)
        report.completion_tokens += sum(r.completion_tokens for r in rows)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _start_chunk(
        self, job_id: str, index: int, chunk: Sequence[ManifestRow], report: JobReport
    ) -> Callable[[], list[ResultRow]]:
        """Queue a chunk in the engine (started at the first chunk with work); the call
        returned waits for its results and saves them in the chunk's file. A chunk whose
        file exists (an earlier run of the job saved it) is read, not run again."""
        key = chunk_key(job_id, index)
        if self.store.exists(key):
            report.chunks_skipped += 1
            rows = read_results(self.store, key)
            return lambda: rows
        # Re-check cancellations: only requests still waiting on this job run.
        live = state.in_progress_ids(self.db, job_id, [row.id for row in chunk])
        requests, refused, models = self._load(chunk, live)
        collect = self._submit(requests, report) if requests else None

        def save() -> list[ResultRow]:
            results = refused + (collect() if collect else [])
            order = {row.id: position for position, row in enumerate(chunk)}
            results.sort(key=lambda r: order[r.id])
            rows = result_rows(results, models, self.registry)
            try:
                self.store.create(key, encode_results(rows))
            except ObjectExists:
                # Another run of this job got there first: its file is the one that counts.
                rows = read_results(self.store, key)
            return rows

        return save

    def _submit(
        self, requests: list[EngineRequest], report: JobReport
    ) -> Callable[[], list[EngineResult]]:
        if self._engine is None:
            t0 = time.monotonic()
            self._engine = self._engine_factory()
            report.engine_start_seconds = time.monotonic() - t0
        return self._engine.submit(requests)

    def _load(
        self, chunk: Sequence[ManifestRow], live: set[str]
    ) -> tuple[list[EngineRequest], list[EngineResult], dict[str, str]]:
        """The chunk's live requests with their bodies, the requests refused already (a
        body the model's kind does not take), and the model each request asked for."""
        by_segment: dict[str, list[str]] = defaultdict(list)
        for row in chunk:
            if row.id in live:
                by_segment[row.segment].append(row.id)
        found: dict[str, tuple[str, str]] = {}
        for segment, ids in by_segment.items():
            table = read_segment(self.store, segment, ids).select(["id", "model", "request_body"])
            for rid, model, body in zip(*(c.to_pylist() for c in table.columns), strict=True):
                found[rid] = (model, body)
        requests: list[EngineRequest] = []
        refused: list[EngineResult] = []
        for rid in (row.id for row in chunk if row.id in found):
            model, body = found[rid]
            kind = self.registry.get(model).kind
            try:
                requests.append(
                    EngineRequest(rid, model, REQUEST_BODIES[kind].model_validate_json(body))
                )
            except ValidationError as exc:
                # Stored by a route that did not check the model's kind: the request
                # fails, the job goes on.
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"])) or "body"
                message = (
                    f"{model} is a {kind} model and this is not a {kind} request "
                    f"({where}: {first['msg']})"
                )
                refused.append(
                    EngineResult(
                        rid, None, ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=message), 0, 0
                    )
                )
        return requests, refused, {rid: model for rid, (model, _) in found.items()}
