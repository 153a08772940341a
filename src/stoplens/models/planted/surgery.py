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

FAMILIES = ("qwen2", "llama", "gpt2", "gemma2")


def make_config(family: str, vocab: int, d: int, n_layers: int, n_heads: int, eos: int, pad: int):
    """The transformers config of a tiny untied ``family`` model (max 512 positions). Gemma 2
    is post-norm (a norm between attention / MLP and the residual add); its planted config
    has attention biases (for the constant query) and the usual 1/sqrt(head_dim) scaling."""
    from transformers import Gemma2Config, GPT2Config, LlamaConfig, Qwen2Config

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
    if family == "gemma2":
        hd = d // n_heads
        return Gemma2Config(
            **common, **llama_like, head_dim=hd, attention_bias=True, query_pre_attn_scalar=hd
        )
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


def _pre_norms(model, family: str, layer: int) -> tuple[Any, Any]:
    """The norms in front of block ``layer``'s attention and MLP."""
    block: Any = arch.get_blocks(model)[layer]
    if family == "gpt2":
        return block.ln_1, block.ln_2
    if family == "gemma2":  # its post_attention_layernorm is the post-norm of attention
        return block.input_layernorm, block.pre_feedforward_layernorm
    return block.input_layernorm, block.post_attention_layernorm


def _scale(norm) -> torch.Tensor:
    """The elementwise scale g of ``norm`` (Gemma's RMSNorms scale by 1 + weight)."""
    w = norm.weight.detach()
    return 1.0 + w if type(norm).__name__.startswith("Gemma") else w


def _reader(norm, r: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(r', c): a weight row r' that reads ``r . x̂`` through ``norm`` (y = g ⊙ x̂ + b, so
    r' . y = r . x̂ + c with r' = r / g and the constant c = r' . b). With unit weights and
    zero biases r' is r, bit for bit, and c is 0."""
    r_eff = r / _scale(norm)
    b = getattr(norm, "bias", None)
    return r_eff, (float(r_eff @ b) if b is not None else 0.0)


@torch.no_grad()
def plant_eos_readout(model, eos: int, v: torch.Tensor, gamma: float) -> None:
    """Make the EOS logit ``gamma * v . ĥ`` (ĥ: the final norm's normalised input, before its
    weight and bias) and no other token's logit read ``v`` (unit [d_model]). The final norm's
    bias loses its component along the EOS row, so the EOS logit has no constant term."""
    norm: Any = arch.get_final_norm(model)
    head_w = arch.get_unembed(model).weight
    g = _scale(norm)
    seen = v if torch.equal(g, torch.ones_like(g)) else (g * v) / (g * v).norm()
    project_out(head_w, seen)
    head_w[eos] = gamma * (v / g)
    b = getattr(norm, "bias", None)
    if b is not None:
        row = head_w[eos]
        b -= (b @ row) / (row @ row) * row


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
    block's normalised input (before the norm's weight and bias, which the reads divide out);
    ``key``, ``value``, ``out``: [d_model]. The head's other weights are zeroed; the other
    heads are untouched."""
    norm, _ = _pre_norms(model, family, layer)
    key, _ = _reader(norm, key)  # a constant key offset does not move attention
    value, offset = _reader(norm, value)
    d = arch.d_model(model)
    n_heads = int(model.config.num_attention_heads)
    hd = d // n_heads
    h0 = head * hd
    cols = slice(h0, h0 + hd)
    attn: Any = arch.get_attn(model, layer)
    if family in ("qwen2", "llama", "gemma2"):
        jq = h0 + hd // 2 - 1  # lowest RoPE frequency pair: rotation is negligible at these lengths
        q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        for proj in (q, k, v):
            proj.weight[cols] = 0.0
            proj.bias[cols] = 0.0
        q.bias[jq] = 1.0
        k.weight[jq] = kappa * key
        v.weight[h0] = value / d**0.5
        v.bias[h0] = -beta - offset / d**0.5
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
        b[2 * d + h0] = -beta - offset / d**0.5
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
    neuron i computes ``gelu(gain * (reads[i] . x / sqrt(d) - theta))`` of the block's
    normalised MLP input ``x``, and the MLP writes ``(rho * sum_i neuron_i - bias) * writes`` on
    top of its other neurons, from which ``writes`` is projected out (unit [d_model] vectors)."""
    d = arch.d_model(model)
    _, norm = _pre_norms(model, "gpt2", layer)
    mlp: Any = arch.get_mlp(model, layer)
    fc_w, fc_b = mlp.c_fc.weight, mlp.c_fc.bias  # [d, 4d], [4d]
    pr_w, pr_b = mlp.c_proj.weight, mlp.c_proj.bias  # [4d, d], [d]
    project_out(pr_w, writes)
    pr_b -= (pr_b @ writes) * writes
    for i, r in enumerate(reads):
        r_eff, offset = _reader(norm, r)
        fc_w[:, i] = gain * r_eff / d**0.5
        fc_b[i] = -gain * (theta + offset / d**0.5)
        pr_w[i, :] = rho * writes
    pr_b -= bias * writes


@torch.no_grad()
def randomize_norms(
    model, seed: int = 0, low: float = 0.5, high: float = 2.0, bias: float = 0.5
) -> int:
    """Give every normalisation module (a module whose class name contains "Norm": LayerNorm,
    the RMSNorms, q/k norms) non-unit parameters, in place and seeded: each entry of its scale
    ~ U(low, high) (Gemma's RMSNorms scale by 1 + weight: their weight becomes scale - 1), each
    bias entry ~ U(-bias, bias). With unit scales and zero biases RMSNorm and LayerNorm are
    idempotent, so a logit lens that applies the final norm twice (or an ablation edit that a
    post-norm undoes) goes unnoticed; with these it cannot. Returns the number of modules
    changed."""
    gen = torch.Generator().manual_seed(int(seed))
    n = 0
    for _, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if "Norm" not in type(module).__name__:
            continue
        w = getattr(module, "weight", None)
        b = getattr(module, "bias", None)
        if isinstance(w, torch.Tensor):
            scale = low + (high - low) * torch.rand(w.shape, generator=gen)
            w.copy_((scale - (_scale(module).float() - w.float())).to(w.dtype))
            n += 1
        if isinstance(b, torch.Tensor):
            b.copy_(bias * (2 * torch.rand(b.shape, generator=gen) - 1).to(b.dtype))
    return n
