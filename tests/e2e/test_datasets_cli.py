"""A data team's path on the served stack: `offpeak submit` a Parquet and a CSV dataset,
wait, and get the results back as Parquet joined by the dataset's id column."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest

from offpeak.client.http import OffpeakClient
from tests.e2e.conftest import OFFPEAK, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MODEL = "llama-3.1-8b-instruct-fp16"


def offpeak(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFPEAK_API_URL": stack.base_url, "OFFPEAK_API_KEY": key}
    done = subprocess.run(
        [str(OFFPEAK), *args], env=env, capture_output=True, text=True, timeout=800, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_submit_parquet_and_csv_datasets_and_get_parquet_results(
    stack: Stack, tmp_path: Path
) -> None:
    key = stack.new_key()
    reviews = tmp_path / "reviews.parquet"
    pl.DataFrame(
        {
            "review_id": ["r-1", "r-2", "r-3"],
            "text": ["The battery lasts two days.", "Arrived broken.", "Does the job."],
        }
    ).write_parquet(reviews)
    tickets = tmp_path / "tickets.csv"
    tickets.write_text("ticket,question\n101,How do I reset it?\n102,Where is my order?\n")

    csv_batch = offpeak(
        stack, key, "submit", str(tickets), "--model", MODEL, "--prompt-column", "question",
        "--id-column", "ticket", "--max-tokens", "8", "--name", "tickets",
    ).stdout.strip()  # fmt: skip
    output = tmp_path / "reviews-results.parquet"
    done = offpeak(
        stack, key, "submit", str(reviews), "--model", MODEL, "--prompt-column", "text",
        "--system", "Answer in five words.", "--id-column", "review_id", "--max-tokens", "8",
        "--name", "reviews", "--wait", "--output", str(output), "--poll", "1",
    )  # fmt: skip
    parquet_batch = done.stdout.strip()
    assert "completed" in done.stderr and str(output) in done.stderr

    results = pl.read_parquet(output)
    assert results["custom_id"].to_list() == ["r-1", "r-2", "r-3"]  # id order = row order
    assert results["status"].to_list() == ["completed"] * 3
    assert all(isinstance(text, str) for text in results["content"])
    assert (results["completion_tokens"] > 0).all() and (results["completion_tokens"] <= 8).all()
    assert results["model"].to_list() == [MODEL] * 3
    assert results["error_code"].null_count() == 3

    with OffpeakClient(stack.base_url, key) as client:
        assert client.wait(csv_batch, poll_seconds=1, timeout=600).status == "completed"
    csv_out = tmp_path / "tickets.parquet"
    offpeak(stack, key, "results", csv_batch, "-o", str(csv_out))
    tickets_done = pl.read_parquet(csv_out)
    assert tickets_done["custom_id"].to_list() == ["101", "102"]
    assert tickets_done["status"].to_list() == ["completed"] * 2

    jsonl_out = tmp_path / "tickets.jsonl"
    offpeak(stack, key, "results", csv_batch, "-o", str(jsonl_out))
    lines = [json.loads(line) for line in jsonl_out.read_text().splitlines()]
    assert [line["metadata"]["custom_id"] for line in lines] == ["101", "102"]
    by_custom_id = dict(zip(tickets_done["custom_id"], tickets_done["content"], strict=True))
    for line in lines:
        answer = line["result_body"]["choices"][0]["message"]["content"]
        assert by_custom_id[line["metadata"]["custom_id"]] == answer

    status = json.loads(offpeak(stack, key, "status", parquet_batch, "--json").stdout)
    assert status["status"] == "completed" and status["request_counts"]["completed"] == 3
    assert status["metadata"]["name"] == "reviews"
