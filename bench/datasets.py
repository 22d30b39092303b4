"""Dataset ingestion benchmark: a Parquet file of prompts to registered requests, side by side.

One run generates a Parquet dataset of N prompts (id + text; the texts are 200-900
characters of varied words, like reviews or tickets to summarise), then times, each in
its own fresh subprocess so imports and memory are clean, taking turns for a few rounds:

(a) offpeak's dataset ingestion (`offpeak.ingest.datasets.ingest_dataset`): both passes over
    the file, request bodies built, Parquet segments written to a local folder store,
    every row registered in a fresh SQLite state database, one batch;
(b) polars reading the same file and writing it back as Parquet (zstd).

It prints rows/s of both (best round), the ratio a/b (target >= 0.3; also in CPU
seconds, steadier on a busy machine) and the peak RSS of (a) (target < 1.5 GB), for the
large size and for a tenth of it, so one sees memory stay flat as the dataset grows.

    .venv/bin/python bench/datasets.py [--rows 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TARGET_RATIO = 0.3
TARGET_RSS_MB = 1536
MODEL = "llama-3.1-70b-instruct-fp16"
TEXT = (
    "the delivery arrived late but the product works well battery lasts two days screen "
    "is bright and sharp support answered quickly refund was easy packaging damaged price "
    "too high for what you get would buy again recommend to friends setup took an hour "
    "instructions unclear app crashes sometimes sound quality excellent fits perfectly "
    "colour faded after washing customer service rude replacement sent within a week"
)
WORDS = TEXT.split()
GENERATE_CHUNK = 100_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A Parquet file of ``rows`` prompts, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    schema = pa.schema([("review_id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, GENERATE_CHUNK):
            n = min(GENERATE_CHUNK, rows - start)
            lengths = rng.integers(35, 150, n)
            picks = rng.integers(0, len(words), int(lengths.sum()))
            flat = words[picks]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            texts = [" ".join(flat[bounds[i] : bounds[i + 1]]) for i in range(n)]
            ids = [f"r{start + i:08d}" for i in range(n)]
            writer.write_table(pa.table({"review_id": ids, "text": texts}, schema=schema))


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from
    the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system."""
    times = os.times()
    return times.user + times.system


def run_ingest(path: Path) -> dict[str, float]:
    """(a), in this process: fresh SQLite + folder store in a temporary folder."""
    from offpeak.catalog.models import ModelRegistry
    from offpeak.config import PACKAGED_MODELS, Settings
    from offpeak.ingest.datasets import DatasetFile, ingest_dataset
    from offpeak.schemas import DatasetMapping
    from offpeak.state.db import Database
    from offpeak.state.keys import create_key
    from offpeak.storage import LocalStore

    with tempfile.TemporaryDirectory(prefix="offpeak-bench-") as tmp:
        db = Database.migrated(f"sqlite:///{tmp}/state.db")
        store = LocalStore(Path(tmp) / "objects")
        key, _ = create_key(db, "bench", 10)
        mapping = DatasetMapping(
            model=MODEL,
            prompt_column="text",
            id_column="review_id",
            system_prompt="Summarise the customer's review in one sentence.",
            max_tokens=64,
            name="bench",
        )
        spec = ModelRegistry.load(PACKAGED_MODELS).get(MODEL)
        rss_before = _peak_rss_mb()
        cpu = _cpu_seconds()
        start = time.perf_counter()
        done = ingest_dataset(
            db,
            store,
            DatasetFile(path),
            mapping,
            key_id=key.id,
            spec=spec,
            segment_rows=Settings.model_fields["seal_rows"].default,
        )
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
        with db.session() as session:
            from sqlalchemy import func, select

            from offpeak.state.models import Request

            registered = session.scalar(
                select(func.count()).where(Request.batch_id == done.batch.id)
            )
        assert registered == done.rows, (registered, done.rows)
        db.dispose()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": done.rows,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": rss_before,
    }


def run_polars(path: Path) -> dict[str, float]:
    """(b), in this process: polars reads the file and writes it back."""
    import polars as pl

    with tempfile.TemporaryDirectory(prefix="offpeak-bench-") as tmp:
        cpu = _cpu_seconds()
        start = time.perf_counter()
        frame = pl.read_parquet(path)
        frame.write_parquet(Path(tmp) / "copy.parquet", compression="zstd")
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": frame.height,
        "peak_rss_mb": _peak_rss_mb(),
    }


def measure(kind: str, path: Path) -> dict[str, float]:
    """One measurement in a fresh subprocess."""
    done = subprocess.run(
        [sys.executable, __file__, f"--child={kind}", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(rows: int, rounds: int, folder: Path) -> dict[str, float]:
    path = folder / f"prompts-{rows}.parquet"
    generate(path, rows)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(measure("ingest", path))
        theirs.append(measure("polars", path))
    a = min(r["seconds"] for r in ours)
    b = min(r["seconds"] for r in theirs)
    return {
        "rows": rows,
        "file_mb": path.stat().st_size / 2**20,
        "a_rows_per_s": rows / a,
        "b_rows_per_s": rows / b,
        "ratio": b / a,
        "cpu_ratio": min(r["cpu_seconds"] for r in theirs) / min(r["cpu_seconds"] for r in ours),
        "a_peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
        "b_peak_rss_mb": max(r["peak_rss_mb"] for r in theirs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["ingest", "polars"], help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_ingest if args.child == "ingest" else run_polars
        print(json.dumps(run(args.path)))
        return
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-data-") as tmp:
        results = [compare(n, args.rounds, Path(tmp)) for n in (args.rows // 10, args.rows)]
    print(
        f"{'rows':>9} {'file MB':>8} {'(a) ours rows/s':>16} {'(b) polars rows/s':>18} "
        f"{'a/b':>6} {'a/b CPU':>8} {'(a) peak RSS MB':>16} {'(b) peak RSS MB':>16}"
    )
    for r in results:
        print(
            f"{r['rows']:>9} {r['file_mb']:>8.1f} {r['a_rows_per_s']:>16,.0f} "
            f"{r['b_rows_per_s']:>18,.0f} {r['ratio']:>6.2f} {r['cpu_ratio']:>8.2f} "
            f"{r['a_peak_rss_mb']:>16.0f} "
            f"{r['b_peak_rss_mb']:>16.0f}"
        )
    big = results[-1]
    ok = big["ratio"] >= TARGET_RATIO and big["a_peak_rss_mb"] < TARGET_RSS_MB
    print(
        f"target: a/b >= {TARGET_RATIO} and peak RSS < {TARGET_RSS_MB} MB at {big['rows']} rows: "
        + ("met" if ok else "NOT met")
    )


if __name__ == "__main__":
    main()
