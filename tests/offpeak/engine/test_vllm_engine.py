"""The real vLLM engine on the tiny model: one engine for the whole module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from offpeak.engine import EngineRequest, EngineResult
from offpeak.engine.vllm_engine import ChatEngine
from tests.offpeak.engine.conftest import MAX_MODEL_LEN
from tests.utils.factories import chat_request

pytestmark = pytest.mark.vllm

MODEL = "llama-3.1-8b-instruct-fp16"  # a stand-in name: it must be echoed as asked
SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "colour": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["ok", "colour", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def eos(tiny_model: Path) -> str:
    """The eos token id as a logit_bias key: biased to -100, answers run to max_tokens."""
    return str(json.loads((tiny_model / "config.json").read_text())["eos_token_id"])


def request(rid: str, content: str = "Hello there", **fields: Any) -> EngineRequest:
    return EngineRequest(rid, MODEL, chat_request(content, model=MODEL, **fields))


def run_one(
    engine: ChatEngine, rid: str = "r", content: str = "Hello there", **fields: Any
) -> dict:
    [result] = engine.run([request(rid, content, **fields)])
    assert result.error is None, result.error
    assert result.result_body is not None
    return result.result_body


def texts(result: EngineResult) -> list[str]:
    assert result.result_body is not None, result.error
    return [c["message"]["content"] for c in result.result_body["choices"]]


def test_a_request_gets_a_chat_completion(engine: ChatEngine) -> None:
    [result] = engine.run([request("abc", max_tokens=8)])
    body = result.result_body
    assert result.error is None and body is not None
    assert body["id"] == "chatcmpl-abc"
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert choice["logprobs"] is None
    assert (result.prompt_tokens, result.completion_tokens) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )


def test_no_requests_no_results(engine: ChatEngine) -> None:
    assert engine.run([]) == []


def test_n_choices_differ_and_all_count(engine: ChatEngine, eos: str) -> None:
    body = run_one(engine, n=3, max_tokens=6, seed=5, temperature=1.0, logit_bias={eos: -100})
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) == 3
    assert body["usage"]["completion_tokens"] == 18


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_is_respected(engine: ChatEngine, eos: str, field: str) -> None:
    body = run_one(engine, **{field: 7}, seed=3, logit_bias={eos: -100})
    [choice] = body["choices"]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 7


def test_default_max_tokens_is_capped_by_the_context_left(engine: ChatEngine, eos: str) -> None:
    long_prompt = "The river runs through the valley. " * 60
    body = run_one(engine, content=long_prompt, seed=1, logit_bias={eos: -100})
    usage = body["usage"]
    assert 400 < usage["prompt_tokens"] < MAX_MODEL_LEN
    assert usage["completion_tokens"] == MAX_MODEL_LEN - usage["prompt_tokens"]
    assert usage["total_tokens"] == MAX_MODEL_LEN
    assert body["choices"][0]["finish_reason"] == "length"


def test_answers_stop_at_eos_now_and_then(engine: ChatEngine) -> None:
    # The tiny model's longer eos row makes it stop by itself sometimes, not always.
    results = engine.run([request(f"r{i}", max_tokens=64, seed=i) for i in range(16)])
    reasons = [r.result_body["choices"][0]["finish_reason"] for r in results if r.result_body]
    assert len(reasons) == 16
    assert 0 < reasons.count("stop") < 16
    for result, reason in zip(results, reasons, strict=True):
        assert (result.completion_tokens < 64) == (reason == "stop")


def test_usage_is_counted_exactly_from_token_ids(engine: ChatEngine, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    messages = [
        {"role": "system", "content": "You answer in one line."},
        {"role": "user", "content": "What is the weather like in the hills?"},
    ]
    body = run_one(
        engine, messages=messages, n=2, max_tokens=12, seed=9, temperature=1.0, logprobs=True
    )
    prompt = AutoTokenizer.from_pretrained(tiny_model).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    per_choice = [len(c["logprobs"]["content"]) for c in body["choices"]]  # one entry per token
    assert body["usage"] == {
        "prompt_tokens": len(prompt),
        "completion_tokens": sum(per_choice),
        "total_tokens": len(prompt) + sum(per_choice),
    }
    assert engine.prompt_token_ids(messages) == prompt


def test_same_seed_same_answer_across_runs_and_within_a_batch(engine: ChatEngine) -> None:
    def batch() -> list[EngineResult]:
        fields = {"max_tokens": 16, "temperature": 1.0}
        return engine.run(
            [
                request("a1", seed=11, **fields),
                request("b", seed=12, **fields),
                request("a2", seed=11, **fields),
            ]
        )

    first, second = batch(), batch()
    assert [texts(r) for r in first] == [texts(r) for r in second]
    a1, b, a2 = first
    assert texts(a1) == texts(a2)
    assert texts(a1) != texts(b)
    alone = engine.run([request("a3", seed=11, max_tokens=16, temperature=1.0)])[0]
    assert texts(alone) == texts(a1)


def test_stop_strings_end_the_answer_before_them(engine: ChatEngine, eos: str) -> None:
    fields = {"max_tokens": 30, "seed": 21, "temperature": 1.0, "logit_bias": {eos: -100}}
    [full] = texts(engine.run([request("full", **fields)])[0])
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    body = run_one(engine, stop=[stop, "never-generated"], **fields)
    [choice] = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == full[: full.index(stop)]
    assert body["usage"]["completion_tokens"] < 30


def test_logprobs_have_the_openai_shape(engine: ChatEngine) -> None:
    body = run_one(engine, max_tokens=6, seed=2, logprobs=True, top_logprobs=3)
    [choice] = body["choices"]
    content = choice["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["bytes"] == list(entry["token"].encode("utf-8"))
        assert entry["logprob"] <= 0
        top = entry["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert entry["logprob"] <= top[0]["logprob"]


def test_logprobs_without_top_logprobs(engine: ChatEngine) -> None:
    body = run_one(engine, max_tokens=4, seed=2, logprobs=True)
    assert all(e["top_logprobs"] == [] for e in body["choices"][0]["logprobs"]["content"])


def test_json_object_answers_parse(engine: ChatEngine) -> None:
    # Any object is allowed, so a random model may still be inside a string at max_tokens;
    # every answer that ends by itself must parse.
    fmt = {"type": "json_object"}
    results = engine.run(
        [request(f"j{i}", response_format=fmt, max_tokens=100, seed=i) for i in range(8)]
    )
    finished = 0
    for result in results:
        assert result.result_body is not None, result.error
        [choice] = result.result_body["choices"]
        content = choice["message"]["content"]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(content), dict)
            finished += 1
        else:
            assert content.startswith("{")
    assert finished >= 4


def test_json_schema_answers_follow_the_schema(engine: ChatEngine) -> None:
    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA}}
    results = engine.run(
        [request(f"s{i}", response_format=fmt, max_tokens=200, seed=i) for i in range(4)]
    )
    for result in results:
        assert result.result_body is not None, result.error
        [choice] = result.result_body["choices"]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


def test_bad_requests_fail_alone_and_the_rest_complete(engine: ChatEngine) -> None:
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    good = {"max_tokens": 8, "temperature": 1.0}
    requests = [
        request("good-1", seed=1, **good),
        request("too-long", content="word " * 600),
        request("bad-schema", response_format=bad_schema),
        request("good-2", seed=2, **good),
        request("out-of-vocab", logit_bias={"999999": 5}),
        request("good-3", seed=3, **good),
    ]
    results = engine.run(requests)
    assert [r.id for r in results] == [r.id for r in requests]
    by_id = {r.id: r for r in results}
    errors = {r.id: r.error.code for r in results if r.error is not None}
    assert errors == {
        "too-long": "context_length_exceeded",
        "bad-schema": "invalid_response_format",
        "out-of-vocab": "invalid_request",
    }
    assert "nope" in by_id["bad-schema"].error.message  # type: ignore[union-attr]
    too_long = by_id["too-long"]
    assert too_long.prompt_tokens > MAX_MODEL_LEN and too_long.completion_tokens == 0
    assert too_long.result_body is None
    # The good ones answer exactly as they would have alone.
    alone = engine.run([request("good-2", seed=2, **good)])[0]
    assert texts(by_id["good-2"]) == texts(alone)
    assert all(by_id[rid].result_body for rid in ("good-1", "good-2", "good-3"))


def test_vllm_refuses_a_bad_request_before_generating_anything(engine: ChatEngine) -> None:
    # ChatEngine's bisection relies on this: a refused call queued nothing and raised
    # vLLM's client-error class.
    from vllm import SamplingParams
    from vllm.exceptions import VLLMClientError
    from vllm.inputs import TokensPrompt

    llm = engine._llm
    prompt = TokensPrompt(
        prompt_token_ids=engine.prompt_token_ids([{"role": "user", "content": "Hello"}])
    )
    with pytest.raises(VLLMClientError):
        llm.enqueue(
            [prompt, prompt],
            [SamplingParams(max_tokens=4), SamplingParams(max_tokens=4, logit_bias={10**6: 1.0})],
            use_tqdm=False,
        )
    assert not llm.llm_engine.has_unfinished_requests()


def test_answers_are_those_of_llm_chat(engine: ChatEngine) -> None:
    # The engine renders each conversation once and queues its token ids; vLLM's own
    # chat call, rendering it again, answers the same.
    from vllm import SamplingParams

    conversations = [
        [{"role": "user", "content": "Hello there"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour"},
            {"role": "assistant", "content": "Blue"},
            {"role": "user", "content": "Another?"},
        ],
    ]
    fields = {"max_tokens": 10, "temperature": 1.0}
    ours = engine.run(
        [request(f"c{i}", messages=c, seed=i, **fields) for i, c in enumerate(conversations)]
    )
    theirs = engine._llm.chat(
        conversations,
        [SamplingParams(seed=i, **fields) for i in range(len(conversations))],
        use_tqdm=False,
    )
    for mine, output in zip(ours, theirs, strict=True):
        assert mine.result_body is not None
        assert mine.prompt_tokens == len(output.prompt_token_ids)
        assert texts(mine) == [output.outputs[0].text]


def test_the_developer_role_is_a_system_message(engine: ChatEngine) -> None:
    def run(role: str) -> EngineResult:
        messages = [{"role": role, "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        return engine.run([request(role, messages=messages, max_tokens=8, seed=4)])[0]

    developer, system = run("developer"), run("system")
    assert developer.error is None
    assert developer.prompt_tokens == system.prompt_tokens
    assert texts(developer) == texts(system)


def test_greedy_with_several_choices_fails_alone(engine: ChatEngine) -> None:
    results = engine.run([request("greedy", n=2, temperature=0), request("ok", max_tokens=4)])
    assert results[0].error is not None and results[0].error.code == "invalid_request"
    assert results[1].error is None


def test_a_conversation_the_chat_template_refuses_fails_alone(
    engine: ChatEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real templates refuse some conversations (roles that do not alternate, ...); the
    # tiny one accepts every role we send, so make it refuse one.
    from jinja2 import TemplateError

    render = engine.prompt_token_ids

    def refusing(messages: list[dict[str, str]]) -> list[int]:
        if messages[-1]["content"] == "refuse me":
            raise TemplateError("Conversation roles must alternate user/assistant")
        return render(messages)

    monkeypatch.setattr(engine, "prompt_token_ids", refusing)
    refused, ok = engine.run([request("no", "refuse me"), request("yes", max_tokens=4)])
    assert refused.error is not None and refused.error.code == "invalid_request"
    assert "alternate" in refused.error.message
    assert ok.error is None


def test_the_engine_leaves_the_process_logging_alone(engine: ChatEngine) -> None:
    # Configuring its own logging, vLLM shuts every handler of the process down first
    # (a Prefect flow run's API log handler among them, after waiting for it to drain).
    import logging

    from vllm import envs

    assert not envs.VLLM_CONFIGURE_LOGGING
    assert not any(h.get_name() == "vllm" for h in logging.getLogger("vllm").handlers)


def test_chunks_queued_together_give_each_its_own_answers(engine: ChatEngine) -> None:
    # A job queues the next chunk before it collects the current one; answers do not
    # depend on what else shares the engine's batch, nor on the order of collection.
    fields = {"max_tokens": 12, "temperature": 1.0}
    first = [request(f"x{i}", seed=i, **fields) for i in range(5)]
    second = [request(f"y{i}", seed=50 + i, **fields) for i in range(4)]
    second.insert(2, request("y-too-long", content="word " * 600))
    alone = [texts(r) for r in engine.run(first)], [texts(r) for r in engine.run(second[:2])]
    collect_first, collect_second = engine.submit(first), engine.submit(second)
    later = collect_second()
    earlier = collect_first()
    assert [r.id for r in earlier] == [r.id for r in first]
    assert [r.id for r in later] == [r.id for r in second]
    assert [texts(r) for r in earlier] == alone[0]
    assert [texts(r) for r in later[:2]] == alone[1]
    assert later[2].error is not None and later[2].error.code == "context_length_exceeded"
    assert all(r.error is None for r in earlier + later[:2] + later[3:])
