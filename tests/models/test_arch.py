"""arch.py: module lookups on tiny models of every supported family, built from configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stoplens.errors import UnsupportedArchitectureError
from stoplens.models import arch


@pytest.fixture
def model(family_model):
    return family_model


def test_lookups_consistent_with_hf_hidden_states(model):
    """residual[l] (block input) equals HF hidden_states[l] for l < L; the final norm applied
    to the last block's output gives HF's final hidden state and, through the unembedding,
    the model's logits."""
    L = arch.n_layers(model)
    assert L == 3 and arch.d_model(model) == 32
    assert isinstance(arch.get_blocks(model), nn.ModuleList)
    post_norm = hasattr(arch.get_blocks(model)[0], "post_feedforward_layernorm")
    for layer in range(L):
        assert isinstance(arch.get_attn(model, layer), nn.Module)
        assert isinstance(arch.get_mlp(model, layer), nn.Module)
        # the terms added to the residual: the modules themselves unless post-norm
        attn_out, mlp_out = arch.get_attn_out(model, layer), arch.get_mlp_out(model, layer)
        assert (attn_out is arch.get_attn(model, layer)) is not post_norm
        assert (mlp_out is arch.get_mlp(model, layer)) is not post_norm
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


def test_peft_wrapper_is_unwrapped(family_configs):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_config(family_configs["qwen2"])
    pm = get_peft_model(m, LoraConfig(r=2, target_modules=["q_proj"]))
    assert arch.get_blocks(pm) is arch.get_blocks(m)
    assert arch.n_layers(pm) == 3
