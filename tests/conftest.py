"""Shared test setup: seeds everything before each test, runs offline, and offers --device so
the same tests can run on a GPU when one is present (CPU by default)."""

from __future__ import annotations

import os
import random

import pytest

# Tests never touch a hub: any accidental download fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and a shared machine's load cannot then multiply the
# cost of every small op (measured here: 18 s instead of 0.4 s for one capture under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for model tests (cpu, cuda)")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--device"))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # pragma: no cover
        pass
    import sys

    torch = sys.modules.get(
        "torch"
    )  # seed torch only where a test uses it (keeps data tests light)
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache root holding the embedded default pair, built once per test session (the
    end-to-end tests share it; building it is what `stoplens run` does first on a new
    machine)."""
    from stoplens.models.tiny import build_tiny_pair

    root = tmp_path_factory.mktemp("stoplens_cache")
    build_tiny_pair(root, progress=False)
    return root


@pytest.fixture(scope="session")
def family_configs() -> dict:
    return _family_configs()


def _family_configs() -> dict:
    """Tiny configs (3 layers, d = 32, vocab 97, untied) of every family stoplens supports.
    Gemma 2, Gemma 3 and OLMo 2 are post-norm: a norm sits between attention / MLP and the
    residual add (see `stoplens.models.arch.ArchSpec`)."""
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Olmo2Config,
        PhiConfig,
        Qwen2Config,
        Qwen3Config,
    )

    kw = dict(vocab_size=97, tie_word_embeddings=False)
    llama = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **kw,
    )  # fmt: skip
    return {
        "qwen2": Qwen2Config(**llama),
        "qwen3": Qwen3Config(head_dim=8, **llama),
        "llama": LlamaConfig(**llama),
        "mistral": MistralConfig(**llama),
        "gemma": GemmaConfig(head_dim=8, **llama),
        "gemma2": Gemma2Config(head_dim=8, **llama),
        "gemma3_text": Gemma3TextConfig(head_dim=8, **llama),
        "olmo2": Olmo2Config(pad_token_id=0, eos_token_id=1, **llama),
        "phi": PhiConfig(**{**llama, "num_key_value_heads": 4}),
        "gpt2": GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=64, **kw),
        "gpt_neox": GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=64,
            **kw,
        ),
    }


FAMILIES = (
    "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "llama", "mistral", "olmo2", "phi",
    "qwen2", "qwen3",
)  # fmt: skip


@pytest.fixture(scope="session", params=FAMILIES)
def family_model(request: pytest.FixtureRequest):
    """A random-weight tiny model of each supported family (eval mode, on --device)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_family_configs()[request.param]).eval()
    return model.to(request.config.getoption("--device"))


@pytest.fixture(scope="session", params=FAMILIES)
def family_model_random_norms(request: pytest.FixtureRequest):
    """Like `family_model`, but every norm has non-unit weights (U(0.5, 2)) and non-zero
    biases (`stoplens.models.planted.randomize_norms`, seeded): RMSNorm and LayerNorm are then
    no longer idempotent, so a norm applied twice, skipped, or undoing an edit shows."""
    import torch
    from transformers import AutoModelForCausalLM

    from stoplens.models.planted import randomize_norms

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_family_configs()[request.param]).eval()
    assert randomize_norms(model, seed=1) >= 3 + 1  # one per block at least, and the final
    return model.to(request.config.getoption("--device"))
