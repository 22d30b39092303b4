"""A tiny random-weight Llama chat model, built locally for tests and the demo.

There is no model hub here, so the embedded default builds its own model: a byte-level
BPE tokenizer trained on the short English text shipped beside this module, a
chatml-style chat template, and a two-layer Llama with random weights. Its text is
gibberish, but everything vLLM does around the weights (tokenisation, chat template,
sampling, stop tokens, token counts, structured output, seeds) is real.

The build is deterministic: the same seed gives the same bytes. It is written into a
temporary folder beside ``dest`` and renamed into place with a marker file written
last, so concurrent builders never see half a model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

CORPUS = Path(__file__).with_name("tiny_corpus.txt")
MARKER = "offpeak-tiny.json"
# Bump when the recipe changes, so existing builds are replaced rather than reused.
RECIPE = 1

VOCAB_SIZE = 2048
PAD, BOS, IM_START, IM_END = "<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"
# <|im_end|> closes every turn and is the eos token: generation stops on it.
SPECIAL_TOKENS = [PAD, BOS, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unsupported role: ' + message['role']) }}"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Random weights put every token at about the same probability, so eos (1 in 2k) would
# almost never be drawn and every answer would run to max_tokens. A longer eos row (the
# embeddings are tied, so it is also eos's output row) spreads eos's logit wide: after
# some contexts it is far above the rest and the model stops, after most far below.
# Measured with max_tokens 64: about 80% of answers stop by themselves at temperature
# 0.7 (30 tokens on average), about half at 1.0; greedy decoding stops early or loops.
EOS_ROW_SCALE = 12.0


def is_built(dest: Path, *, seed: int = 0) -> bool:
    """Whether ``dest`` holds a complete build of this recipe with this seed."""
    try:
        marker = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker == {"recipe": RECIPE, "seed": seed})


def build_tiny(dest: Path, *, seed: int = 0) -> Path:
    """Build the tiny chat model into ``dest`` (a folder) unless it is already there.

    Returns ``dest``. Safe to call from several processes at once: each builds into its
    own temporary folder and the first rename wins.
    """
    dest = Path(dest)
    if is_built(dest, seed=seed):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        _write_model(tmp, seed)
        (tmp / MARKER).write_text(json.dumps({"recipe": RECIPE, "seed": seed}))
        _move_into_place(tmp, dest, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_tiny(dest: Path) -> Path:
    """The tiny model at ``dest``, built with the default seed if it is missing."""
    return build_tiny(dest)


def _move_into_place(tmp: Path, dest: Path, seed: int) -> None:
    if dest.exists() and not is_built(dest, seed=seed):
        # A stale build (other seed or recipe): move it aside first; if another builder
        # already did, the rename fails and that is fine.
        stale = dest.parent / f".{dest.name}.stale-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            os.rename(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, dest)
    except OSError:
        # Another builder renamed first; its build is as good as ours.
        if not is_built(dest, seed=seed):
            raise


def _write_model(folder: Path, seed: int) -> None:
    # Heavy imports stay here so that importing offpeak.engine stays cheap.
    from transformers.utils import logging as hf_logging

    # No "Writing model shards" progress bar from inside a library call.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        _write_weights(folder, seed)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _write_weights(folder: Path, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True)
    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(folder)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    embeddings = model.get_input_embeddings()  # tied: also the output layer
    assert isinstance(embeddings, torch.nn.Embedding)
    with torch.no_grad():
        embeddings.weight[tokenizer.eos_token_id] *= EOS_ROW_SCALE
    model.save_pretrained(folder)


def _train_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
