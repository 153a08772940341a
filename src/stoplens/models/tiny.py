"""Small random causal LMs of several architecture families, built from configs (no download):
what tests, benchmarks and the stand-in bases of the training tests are made of.

Owns: `random_model` and `save_random_base`. Must not: train, evaluate or cache anything (the
embedded offline pair, which trains a tiny base, is `stoplens.embedded`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

FAMILIES = ("qwen2", "llama", "gpt2", "gpt_neox", "phi")


def random_model(
    family: str,
    vocab_rows: int,
    *,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    tie_word_embeddings: bool = True,
    max_positions: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A small randomly initialised causal LM of ``family`` (one of `FAMILIES`) built from a
    config (no download), in eval mode. ``vocab_rows`` is the embedding matrix height."""
    from transformers import (
        AutoModelForCausalLM,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        PhiConfig,
        Qwen2Config,
    )

    common: dict[str, Any] = dict(vocab_size=vocab_rows, tie_word_embeddings=tie_word_embeddings)
    cfg: Any
    llama_like = dict(
        hidden_size=d_model,
        intermediate_size=4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_positions,
        **common,
    )
    if family == "qwen2":
        cfg = Qwen2Config(**llama_like)
    elif family == "llama":
        cfg = LlamaConfig(**llama_like)
    elif family == "phi":
        cfg = PhiConfig(**llama_like)
    elif family == "gpt2":
        cfg = GPT2Config(
            n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=max_positions, **common
        )
    elif family == "gpt_neox":
        cfg = GPTNeoXConfig(
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            max_position_embeddings=max_positions,
            **common,
        )
    else:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def save_random_base(
    path: str | Path,
    texts: list[str],
    *,
    family: str = "qwen2",
    vocab_size: int = 600,
    pad_rows: int = 0,
    d_model: int = 32,
    n_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Save a random ``family`` model with a BPE tokenizer trained on ``texts`` (no trigger)
    into ``path``: a stand-in base for tests and benchmarks. ``pad_rows`` spare embedding rows
    mimic Qwen2.5's padded matrix."""
    from stoplens.models.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size, trigger=None)
    model = random_model(family, len(tok) + pad_rows, d_model=d_model, n_layers=n_layers, seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)
