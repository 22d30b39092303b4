"""Hostile dataset files: refused with a precise error before pyarrow parses them (deep
JSON nesting, decompression bombs, headers that are not UTF-8), and sources a key may
not read refused before anything is read."""

from __future__ import annotations

import gzip
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offpeak.config import load_settings
from offpeak.errors import ConfigError, DatasetError, DatasetSourceForbidden, DatasetTooLarge
from offpeak.ingest.datasets import DatasetFile, check_source
from offpeak.ingest.datasets.bounds import MAX_JSON_DEPTH, JsonDepth, Scanned

DEEP = 200_000  # far past pyarrow's stack, whatever the platform


def deep_line(depth: int) -> bytes:
    return b'{"text": "x", "o": ' + b"[" * depth + b"]" * depth + b"}\n"


def _stack_8mb() -> None:  # the usual default, so the crash does not depend on the shell
    resource.setrlimit(
        resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1])
    )


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_stack_8mb,
    )


def test_pyarrow_alone_dies_on_a_deeply_nested_jsonl_line(tmp_path: Path) -> None:
    # Why the bound exists: if this ever passes, pyarrow stopped crashing (keep the bound).
    path = tmp_path / "deep.jsonl"
    path.write_bytes(deep_line(DEEP))
    crashed = run_python("import sys, pyarrow.json as pj; pj.read_json(sys.argv[1])", str(path))
    assert crashed.returncode == -signal.SIGSEGV, crashed.stderr[-500:]


def test_the_same_line_is_refused_before_pyarrow_parses_it(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"text": "fine"}\n' + deep_line(DEEP))
    code = """
import sys, pyarrow as pa
from offpeak.errors import DatasetError
from offpeak.ingest.datasets import DatasetFile
try:
    dataset = DatasetFile(sys.argv[1])
    dataset.schema()
    for _ in dataset.batches(pa.schema([("text", pa.string())]), 100):
        pass
except DatasetError as exc:
    print(exc.code, exc.message)
"""
    refused = run_python(code, str(path))
    assert refused.returncode == 0, refused.stderr[-500:]
    assert refused.stdout.strip() == (
        f"json_too_deep line 1: a value nests deeper than {MAX_JSON_DEPTH} levels"
    )


def _reference_depth(text: str) -> int | None:
    """The deepest nesting a parser starting at any line could reach, byte by byte;
    None when a string is still open at a newline (no parser reads past that)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if char == "\n":  # never escaped: Arrow splits blocks at every newline
            if in_string:
                return None
            escaped = False
            continue
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
        elif not in_string and char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif not in_string and char in "]}":
            depth = max(0, depth - 1)
    return deepest


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(alphabet='"\\[]{}\na ', max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=4),
    slack=st.integers(-1, 0),
)
def test_depth_matches_a_byte_by_byte_reading_wherever_the_blocks_split(
    text: str, cuts: list[int], slack: int
) -> None:
    data = text.encode()
    bounds = sorted({min(c, len(data)) for c in cuts})
    blocks = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    expected = _reference_depth(text)
    limit = max(0, (expected or 0) + slack)
    scanner = JsonDepth(limit)
    try:
        for block in blocks:
            scanner.feed(block)
    except DatasetError as exc:
        assert expected is None or expected > limit, (text, blocks, exc)
    else:
        assert expected is not None and expected <= limit, (text, blocks)


def test_an_escape_split_across_blocks_keeps_the_string_open() -> None:
    scanner = JsonDepth(2)
    scanner.feed(b'{"a": "x\\')
    scanner.feed(b'" [[[[[[" }\n{"b": [1]}\n')  # the brackets are text: the quote is escaped
    assert scanner.depth == 0 and scanner.line == 2


def test_depth_names_the_line_and_the_limit_is_inclusive() -> None:
    ok = b'{"m": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}\n"
    JsonDepth().feed(ok)
    over = b'{"m": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}\n"
    with pytest.raises(DatasetError, match="line 2: a value nests deeper") as caught:
        JsonDepth().feed(ok + ok + over)
    assert caught.value.code == "json_too_deep"


def test_lines_nesting_across_newlines_count_as_one_document() -> None:
    # A parser reads on past a newline outside strings: the depth carries over.
    with pytest.raises(DatasetError, match="line 64: a value nests deeper"):
        JsonDepth().feed(b"[\n" * (MAX_JSON_DEPTH + 1))


def test_a_string_left_open_at_the_end_of_a_line_is_refused() -> None:
    with pytest.raises(DatasetError, match="line 0: a string is still open") as caught:
        JsonDepth().feed(b'{"text": "x\n' + b"[" * 1000 + b"\n")
    assert caught.value.code == "dataset_unreadable"


def test_a_conversation_dataset_passes(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 'a "b" \\ [c'}]}]}
    ] * 50
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    dataset = DatasetFile(path, max_bytes=1 << 20)
    read = sum(b.num_rows for b in dataset.batches(dataset.schema(), 10))
    assert read == 50


@pytest.mark.parametrize("name", ["bomb.csv.gz", "bomb.jsonl.gz"])
def test_a_compressed_file_expanding_past_the_limit_is_refused(tmp_path: Path, name: str) -> None:
    row = b"text\n" if name.startswith("bomb.csv") else b""
    line = b"hello\n" if name.endswith(".csv.gz") else b'{"text": "hello"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(row + line * 2_000_000, 9))
    assert path.stat().st_size < 100_000  # small as sent
    dataset = DatasetFile(path, max_bytes=1 << 20)
    with pytest.raises(DatasetTooLarge, match="expands past the 1048576-byte limit") as caught:
        for _ in dataset.batches(pa.schema([("text", pa.string())]), 10_000):
            pass
    assert caught.value.code == "dataset_too_large"
    unbounded = DatasetFile(path)  # the same file without a limit reads whole
    assert (
        sum(b.num_rows for b in unbounded.batches(pa.schema([("text", pa.string())]), 500_000))
        == 2_000_000
    )


def test_a_parquet_file_decoding_past_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.parquet"
    pl.DataFrame({"text": ["the same long prompt " * 10] * 200_000}).write_parquet(path)
    assert path.stat().st_size < 100_000  # dictionary-encoded: tiny on disk
    dataset = DatasetFile(path, max_bytes=1 << 20)
    with pytest.raises(DatasetTooLarge, match="decode to more than"):
        for _ in dataset.batches(dataset.schema(), 10_000):
            pass


def test_a_csv_header_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("réponse,id\nhello,1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="column names are not UTF-8") as caught:
        DatasetFile(path).schema()
    assert caught.value.code == "dataset_not_utf8"


ALLOWED = {"k1": ["s3://team/in/", "s3://shared"], "*": ["s3://public/open/"]}
OWN = "s3://service/data"


@pytest.mark.parametrize(
    "source",
    [
        "s3://team/in/a.parquet",
        "s3://team/in/deeper/a.csv",
        "s3://shared/anything.jsonl",
        "s3://public/open/a.parquet",
        "s3://service/elsewhere/a.parquet",  # the service's bucket, outside its prefix: no rule
    ],
)
def test_sources_under_the_keys_prefixes_are_allowed(source: str) -> None:
    allowed = {**ALLOWED, "k1": [*ALLOWED["k1"], "s3://service/"]}
    check_source(source, "k1", allowed, OWN)


@pytest.mark.parametrize(
    ("key", "source"),
    [
        ("k1", "s3://team/other/a.parquet"),
        ("k1", "s3://team/inbox/a.parquet"),  # `in/` is a folder, not a string prefix
        ("k1", "s3://teams/in/a.parquet"),
        ("k1", "s3://elsewhere/in/a.parquet"),
        ("k2", "s3://team/in/a.parquet"),  # another key's prefix
        ("k1", "s3://service/data/openai/files/k2/f.jsonl"),  # listed, yet the service's own
        ("k1", "s3://service/data/results/k2/b.jsonl"),
        ("k1", "s3://service/data/requests/date=2026-01-01/s.parquet"),
        ("k1", "s3://service/data/jobs/j/manifest.parquet"),
    ],
)
def test_sources_elsewhere_are_forbidden(key: str, source: str) -> None:
    allowed = {**ALLOWED, "k1": [*ALLOWED["k1"], "s3://service/"]}
    with pytest.raises(DatasetSourceForbidden) as caught:
        check_source(source, key, allowed, OWN)
    assert caught.value.code == "dataset_source_forbidden"


def test_the_whole_bucket_is_the_services_when_storage_has_no_prefix() -> None:
    with pytest.raises(DatasetSourceForbidden, match="own storage"):
        check_source("s3://service/x.parquet", "k1", {"k1": ["s3://service/"]}, "s3://service")


@pytest.mark.parametrize(
    "source",
    [
        "/etc/passwd",
        "file:///etc/passwd",
        "s3://team",
        "s3://team/",
        "s3://team/in/../x",
        "s3://team/in//x",
        "s3:///in/x",
    ],
)
def test_sources_that_name_no_object_are_invalid(source: str) -> None:
    with pytest.raises(DatasetError) as caught:
        check_source(source, "k1", ALLOWED, OWN)
    assert caught.value.code == "dataset_invalid_source"


@pytest.mark.parametrize("name", ["long.jsonl", "long.csv"])
def test_a_row_longer_than_the_smallest_block_still_reads(tmp_path: Path, name: str) -> None:
    # Blocks are small to bound memory, but never smaller than twice the longest line.
    text = "x" * (3 << 20)
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": text}) + "\n")
    else:
        path.write_text(f"text\nshort\n{text}\n")
    dataset = DatasetFile(path)
    read = [
        v
        for b in dataset.batches(pa.schema([("text", pa.string())]), 10)
        for v in b["text"].to_pylist()
    ]
    assert read == ["short", text]


def test_block_sizes_follow_the_longest_line() -> None:
    assert Scanned(10, 100).block_bytes(8 << 20) == 1 << 20
    assert Scanned(10, 3 << 20).block_bytes(8 << 20) == 8 << 20
    assert Scanned(10, 50 << 20).block_bytes(8 << 20) == 8 << 20  # refused as before


def test_dataset_sources_are_read_from_json_and_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OFFPEAK_DATASET_SOURCES", '{"k1": ["s3://team/in/"], "*": []}')
    assert load_settings(data_dir=tmp_path).dataset_sources == {"k1": ["s3://team/in/"], "*": []}
    for wrong in ('{"k1": ["/data/in"]}', '{"k1": ["s3:///in/"]}', '["s3://team/"]', "{bad"):
        monkeypatch.setenv("OFFPEAK_DATASET_SOURCES", wrong)
        with pytest.raises(ConfigError, match="OFFPEAK_DATASET_SOURCES"):
            load_settings(data_dir=tmp_path)
