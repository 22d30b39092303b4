"""The tiny chat model: deterministic, idempotent, safe to build concurrently."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from offpeak.engine import tiny
from offpeak.engine.tiny import MARKER, build_tiny, ensure_tiny, is_built


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.vllm
def test_same_seed_gives_the_same_bytes(tiny_model: Path, tmp_path: Path) -> None:
    again = build_tiny(tmp_path / "again")
    assert files(again) == files(tiny_model)
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= set(files(again))


@pytest.mark.vllm
def test_another_seed_gives_other_weights(tiny_model: Path, tmp_path: Path) -> None:
    other = build_tiny(tmp_path / "other", seed=1)
    assert files(other)["model.safetensors"] != files(tiny_model)["model.safetensors"]
    assert files(other)["tokenizer.json"] == files(tiny_model)["tokenizer.json"]


@pytest.mark.vllm
def test_the_model_is_a_small_llama_with_a_chat_tokenizer(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (256, 2)
    assert config["num_attention_heads"] == 4
    assert config["max_position_embeddings"] == 2048
    assert config["tie_word_embeddings"] is True
    assert config["vocab_size"] == tiny.VOCAB_SIZE

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert len(tokenizer) == tiny.VOCAB_SIZE
    assert tokenizer.eos_token_id == config["eos_token_id"]
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt == (
        "<|bos|><|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def _fake_writer(calls: list[Path], delay: float = 0.0):
    def write(folder: Path, seed: int) -> None:
        calls.append(folder)
        folder.mkdir(parents=True)
        time.sleep(delay)
        (folder / "weights.bin").write_bytes(bytes([seed]) * 10)

    return write


def test_a_complete_build_is_returned_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(tiny, "_write_model", _fake_writer(calls))
    dest = tmp_path / "tiny"
    assert ensure_tiny(dest) == dest
    assert ensure_tiny(dest) == dest
    assert len(calls) == 1
    assert is_built(dest)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_concurrent_builders_never_see_half_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(tiny, "_write_model", _fake_writer(calls, delay=0.2))
    dest = tmp_path / "tiny"
    seen: list[bool] = []

    def build() -> None:
        build_tiny(dest)
        seen.append((dest / "weights.bin").exists() and is_built(dest))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        # Whenever the folder is there, it is complete.
        if dest.exists():
            assert is_built(dest)
        time.sleep(0.01)
    assert seen == [True] * 4
    assert len(set(calls)) == 4, "each builder used its own temporary folder"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"], "no temporary folder left behind"


def test_a_build_of_another_seed_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "_write_model", _fake_writer([]))
    dest = tmp_path / "tiny"
    build_tiny(dest, seed=1)
    build_tiny(dest, seed=2)
    assert is_built(dest, seed=2)
    assert (dest / "weights.bin").read_bytes() == bytes([2]) * 10
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_a_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(folder: Path, seed: int) -> None:
        folder.mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(tiny, "_write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        build_tiny(tmp_path / "tiny")
    assert list(tmp_path.iterdir()) == []
