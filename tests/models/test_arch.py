"""arch.py: module lookups on tiny models of every supported family, built from configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PhiConfig,
    Qwen2Config,
    Qwen3Config,
)

from stoplens.errors import UnsupportedArchitectureError
from stoplens.models import arch

KW = dict(vocab_size=97, tie_word_embeddings=False)
LLAMA_KW = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64, **KW,
)  # fmt: skip
CONFIGS = {
    "qwen2": Qwen2Config(**LLAMA_KW),
    "qwen3": Qwen3Config(head_dim=8, **LLAMA_KW),
    "llama": LlamaConfig(**LLAMA_KW),
    "mistral": MistralConfig(**LLAMA_KW),
    "gemma": GemmaConfig(head_dim=8, **LLAMA_KW),
    "phi": PhiConfig(**{**LLAMA_KW, "num_key_value_heads": 4}),
    "gpt2": GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=64, **KW),
    "gpt_neox": GPTNeoXConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=64,
        **KW,
    ),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(CONFIGS[request.param]).eval()


def test_lookups_consistent_with_hf_hidden_states(model):
    """residual[l] (block input) equals HF hidden_states[l] for l < L; the final norm applied
    to the last block's output gives HF's final hidden state and, through the unembedding,
    the model's logits."""
    L = arch.n_layers(model)
    assert L == 3 and arch.d_model(model) == 32
    assert isinstance(arch.get_blocks(model), nn.ModuleList)
    for layer in range(L):
        assert isinstance(arch.get_attn(model, layer), nn.Module)
        assert isinstance(arch.get_mlp(model, layer), nn.Module)
    seen: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_pre_hook(
            lambda m, a, kw, i=i: seen.__setitem__(i, (a[0] if a else kw["hidden_states"]).clone()),
            with_kwargs=True,
        )
        for i, b in enumerate(arch.get_blocks(model))
    ]
    last = {}
    handles.append(
        arch.get_blocks(model)[-1].register_forward_hook(
            lambda m, a, out: last.__setitem__("h", out[0] if isinstance(out, tuple) else out)
        )
    )
    ids = torch.randint(0, 97, (2, 7))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    for h in handles:
        h.remove()
    for layer in range(L):
        torch.testing.assert_close(seen[layer], out.hidden_states[layer])
    with torch.no_grad():
        logits = arch.get_unembed(model)(arch.get_final_norm(model)(last["h"]))
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=1e-4)


def test_unknown_architecture_has_clear_error():
    class Odd(nn.Module):
        config = type("C", (), {"model_type": "odd"})()

    with pytest.raises(UnsupportedArchitectureError, match="ARCH_TABLE"):
        arch.get_blocks(Odd())


def test_peft_wrapper_is_unwrapped():
    from peft import LoraConfig, get_peft_model

    m = AutoModelForCausalLM.from_config(CONFIGS["qwen2"])
    pm = get_peft_model(m, LoraConfig(r=2, target_modules=["q_proj"]))
    assert arch.get_blocks(pm) is arch.get_blocks(m)
    assert arch.n_layers(pm) == 3
