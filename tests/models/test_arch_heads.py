"""arch.py's per-head and weight-space lookups on tiny models of every supported family
(grouped-query attention included: the llama/qwen2 configs have 4 heads on 2 KV heads)."""

from __future__ import annotations

import torch

from stoplens.models import arch


def test_output_projections_and_head_split(family_model):
    model = family_model
    d, H = arch.d_model(model), arch.n_heads(model)
    hd = arch.head_dim(model)
    assert H == 4
    for layer in range(arch.n_layers(model)):
        o = arch.linear_weight(arch.get_attn_out_proj(model, layer))
        m = arch.linear_weight(arch.get_mlp_out_proj(model, layer))
        assert o.shape == (d, H * hd), "[out, in] with one head_dim slice per query head"
        assert m.shape[0] == d
    # the attention output is the output projection of the concatenated heads
    seen = {}
    proj = arch.get_attn_out_proj(model, 1)
    h = proj.register_forward_pre_hook(lambda mod, args: seen.__setitem__("z", args[0].clone()))
    try:
        with torch.no_grad():
            model(torch.randint(0, 97, (2, 6)))
    finally:
        h.remove()
    z = seen["z"]
    assert z.shape[-1] == H * hd
    w = arch.linear_weight(proj)
    per_head = sum(
        z[..., i * hd : (i + 1) * hd] @ w[:, i * hd : (i + 1) * hd].t() for i in range(H)
    )
    bias = getattr(getattr(proj, "base_layer", proj), "bias", None)
    full = proj(z) - (bias if bias is not None else 0)
    torch.testing.assert_close(per_head, full, atol=1e-5, rtol=1e-4)


def test_eager_attention_returns_weights_and_restores(family_model):
    model = family_model
    before = model.config._attn_implementation
    got = {}
    attn = arch.get_attn(model, 0)
    h = attn.register_forward_hook(lambda mod, args, out: got.__setitem__("w", out[1]))
    try:
        with arch.eager_attention(model), torch.no_grad():
            model(torch.randint(0, 97, (2, 5)))
    finally:
        h.remove()
    w = got["w"]
    assert w is not None and w.shape == (2, arch.n_heads(model), 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, arch.n_heads(model), 5))
    assert model.config._attn_implementation == before
