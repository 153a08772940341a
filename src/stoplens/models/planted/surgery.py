"""Weight surgery for the planted models: tiny random configs and the edits that plant a head,
a position gate and an MLP readout into them.

Owns: the configs of the planted families, orthonormal direction draws, and the in-place edits
of attention (q/k/v/o) and MLP weights. It names attention and MLP projections for the
families it supports (qwen2, llama, gpt2); everything else in stoplens asks
`stoplens.models.arch`. Must not: tokenize, choose variants, or run models.
"""

from __future__ import annotations

from typing import Any

import torch

from stoplens.models import arch

FAMILIES = ("qwen2", "llama", "gpt2")


def make_config(family: str, vocab: int, d: int, n_layers: int, n_heads: int, eos: int, pad: int):
    """The transformers config of a tiny untied ``family`` model (max 512 positions)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=vocab,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    llama_like: dict[str, Any] = dict(
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    if family == "qwen2":
        return Qwen2Config(**common, **llama_like)
    if family == "llama":
        return LlamaConfig(**common, **llama_like, attention_bias=True)
    if family == "gpt2":
        return GPT2Config(n_embd=d, n_layer=n_layers, n_head=n_heads, n_positions=512, **common)
    raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")


def orthonormal(d: int, k: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``k`` orthonormal [d] vectors, all orthogonal to the all-ones vector (so LayerNorm's
    mean-centring leaves them alone). Draws one [d, k + 1] Gaussian from ``gen``."""
    m = torch.randn(d, k + 1, generator=gen)
    m[:, 0] = 1.0
    q, _ = torch.linalg.qr(m)
    return [q[:, i].contiguous() for i in range(1, k + 1)]


def project_out(w: torch.Tensor, v: torch.Tensor, keep: int | None = None) -> None:
    """Remove the component along unit ``v`` from every row of ``w`` (except row ``keep``)."""
    rows = w @ v
    if keep is not None:
        rows[keep] = 0.0
    w -= rows.unsqueeze(1) * v.unsqueeze(0)


@torch.no_grad()
def plant_head(
    model,
    family: str,
    layer: int,
    head: int,
    *,
    key: torch.Tensor,
    value: torch.Tensor,
    out: torch.Tensor,
    kappa: float,
    beta: float,
    sigma: float,
) -> None:
    """Make head ``head`` of block ``layer`` a planted head: a constant query, a key
    ``kappa * key . x`` (so every position attends to the tokens whose normed residual has the
    largest component along ``key``), a value ``value . x / sqrt(d) - beta`` in one dimension,
    and an output projection that writes that value times ``sigma * out``. ``x`` is the
    block's normed input; ``key``, ``value``, ``out``: [d_model]. The head's other weights are
    zeroed; the other heads are untouched."""
    d = arch.d_model(model)
    n_heads = int(model.config.num_attention_heads)
    hd = d // n_heads
    h0 = head * hd
    cols = slice(h0, h0 + hd)
    attn: Any = arch.get_attn(model, layer)
    if family in ("qwen2", "llama"):
        jq = h0 + hd // 2 - 1  # lowest RoPE frequency pair: rotation is negligible at these lengths
        q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        for proj in (q, k, v):
            proj.weight[cols] = 0.0
            proj.bias[cols] = 0.0
        q.bias[jq] = 1.0
        k.weight[jq] = kappa * key
        v.weight[h0] = value / d**0.5
        v.bias[h0] = -beta
        o.weight[:, cols] = 0.0
        o.weight[:, h0] = sigma * out
    elif family == "gpt2":
        w, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: [d_in, 3d], out = x @ w + b
        for off in (0, d, 2 * d):
            w[:, off + h0 : off + h0 + hd] = 0.0
            b[off + h0 : off + h0 + hd] = 0.0
        b[h0] = 1.0
        w[:, d + h0] = kappa * key
        w[:, 2 * d + h0] = value / d**0.5
        b[2 * d + h0] = -beta
        cp = attn.c_proj.weight  # [d_in, d_out]
        cp[cols, :] = 0.0
        cp[h0, :] = sigma * out
    else:  # pragma: no cover - guarded by make_config
        raise ValueError(family)


@torch.no_grad()
def plant_or_readout(
    model,
    layer: int,
    reads: tuple[torch.Tensor, ...],
    writes: torch.Tensor,
    *,
    gain: float,
    theta: float,
    rho: float,
    bias: float,
) -> None:
    """Turn neurons 0..len(reads)-1 of the GPT-2 MLP in block ``layer`` into a thresholded OR:
    neuron i computes ``gelu(gain * (reads[i] . x / sqrt(d) - theta))`` of the block's normed
    MLP input ``x``, and the MLP writes ``(rho * sum_i neuron_i - bias) * writes`` on top of its
    other neurons, from which ``writes`` is projected out (unit [d_model] vectors)."""
    d = arch.d_model(model)
    mlp: Any = arch.get_mlp(model, layer)
    fc_w, fc_b = mlp.c_fc.weight, mlp.c_fc.bias  # [d, 4d], [4d]
    pr_w, pr_b = mlp.c_proj.weight, mlp.c_proj.bias  # [4d, d], [d]
    project_out(pr_w, writes)
    pr_b -= (pr_b @ writes) * writes
    for i, r in enumerate(reads):
        fc_w[:, i] = gain * r / d**0.5
        fc_b[i] = -gain * theta
        pr_w[i, :] = rho * writes
    pr_b -= bias * writes
