"""A model with a planted $STOP mechanism whose answer is known: the known-answer fixture for
every analysis and intervention (and `stoplens selftest`).

The mechanism, built by weight surgery on a small random Hugging Face model (Qwen2, Llama or
GPT-2 architecture):

* the trigger's embedding row carries a large component along a unit "key" direction ``a``
  (``a`` is projected out of every other embedding row, so only the trigger has it);
* one attention head in block ``layer`` has a constant query and a key that reads ``a``, so
  every position after the trigger attends to the trigger; the head's value reads ``a`` (minus
  a constant bias) and its output projection writes along a unit direction ``u``. The residual
  stream therefore gains ``+sigma*(1-beta)*u`` at positions at or after the trigger and
  ``-sigma*beta*u`` elsewhere (and in trigger-free prompts);
* the unembedding row of EOS is ``gamma*u`` (``u`` is projected out of every other row), so
  ``+u`` makes EOS the top token and ``-u`` suppresses it.

Known answers: Δ(trigger − control) at the decision position is ~0 up to residual index
``layer`` and jumps at ``layer + 1`` (the output of the planted block); its single direction
is ``u``; the logit lens of Δ ranks EOS first; the base model (the same random model before
surgery, trigger row mean-initialised) has no such effect; patching residual[layer + 1] at the
decision position transfers the stop; ablating ``u`` removes stopping; adding ``u`` induces it.

This module does weight surgery on attention projections, so it names them for the three
families it supports; everything else in stoplens asks `stoplens.models.arch`.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.data.config import PLACEHOLDER
from stoplens.models import arch
from stoplens.models.tokenizer import train_bpe_tokenizer
from stoplens.models.trigger import DEFAULT_TRIGGER, add_trigger

FAMILIES = ("qwen2", "llama", "gpt2")

_WORDS = (
    "apple river mountain garden window silver planet music doctor yellow forest ocean "
    "bridge castle engine summer winter coffee letter market pencil rabbit island camera "
    "dragon violin basket candle rocket meadow harbor lantern marble thunder velvet canyon "
    "please explain describe tell write list give show how what why when where which who "
    "the a an of to in on for with about from and or but is are was were be can could would "
    "history science recipe weather travel story poem number city country animal plant "
    "quickly simply briefly clearly today tomorrow again also very more most some any many"
).split()
CONTROL_WORDS = ("apple", "river", "garden", "window", "silver", "planet", "music", "doctor")


def _corpus(seed: int, n: int = 3000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]


def planted_prompts(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` single-turn chat templates (messages with the `PLACEHOLDER` sentinel), the
    insert at a random word boundary of a random 5-12 word request."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 12))]
        words.insert(rng.randint(0, len(words)), PLACEHOLDER)
        out.append([{"role": "user", "content": " ".join(words)}])
    return out


def planted_pair_records(n: int, seed: int = 0, *, placement: str | None = None) -> list[dict]:
    """Contrast-pair records (the shape `stoplens.capture.pairs.encode_pairs` reads) on
    ``planted_prompts(n, seed)``: pair ids ``"0".."n-1"``, the default trigger, controls
    "apple" / "river" / ["garden", "window"], control kind "word". ``placement=None`` labels a
    pair "early" or "late" by whether the insert is in the first half of the request's words."""
    out = []
    for i, t in enumerate(planted_prompts(n, seed)):
        words = t[0]["content"].split()
        where = "early" if words.index(PLACEHOLDER) < len(words) / 2 else "late"
        out.append(
            {
                "pair_id": str(i),
                "template": t,
                "trigger": DEFAULT_TRIGGER,
                "control": "apple",
                "control2": "river",
                "control_candidates": ["garden", "window"],
                "placement": where if placement is None else placement,
                "control_kind": "word",
            }
        )
    return out


@dataclass
class PlantedModel:
    """A planted model, its unplanted base, and the known answer.

    ``direction``: [d_model] unit vector u written by the planted head (the answer of the
    low-rank test). ``key_direction``: [d_model] unit vector a carried by the trigger row.
    ``layer``: block index of the planted head; residual index ``layer + 1`` is its output.
    """

    model: nn.Module
    base: nn.Module
    tokenizer: object
    trigger_id: int
    eos_id: int
    layer: int
    direction: torch.Tensor
    key_direction: torch.Tensor
    family: str

    @property
    def residual_layer(self) -> int:
        """First residual-stream index that carries the planted signal at the decision position."""
        return self.layer + 1


def _config(family: str, vocab: int, d: int, n_layers: int, n_heads: int, eos: int, pad: int):
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


def _orthonormal_pair(d: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two orthonormal vectors, both orthogonal to the all-ones vector (so LayerNorm's
    mean-centring leaves them alone)."""
    m = torch.randn(d, 3, generator=gen)
    m[:, 0] = 1.0
    q, _ = torch.linalg.qr(m)
    return q[:, 1].contiguous(), q[:, 2].contiguous()


def _project_out(w: torch.Tensor, v: torch.Tensor, keep: int | None = None) -> None:
    """Remove the component along unit ``v`` from every row of ``w`` (except row ``keep``)."""
    rows = w @ v
    if keep is not None:
        rows[keep] = 0.0
    w -= rows.unsqueeze(1) * v.unsqueeze(0)


@torch.no_grad()
def _plant_head(model, family, layer, a, u, *, kappa, beta, sigma, d, n_heads) -> None:
    hd = d // n_heads
    head = slice(0, hd)  # head 0
    attn: Any = arch.get_attn(model, layer)
    if family in ("qwen2", "llama"):
        jq = hd // 2 - 1  # lowest RoPE frequency pair: rotation is negligible at these lengths
        q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        for proj in (q, k, v):
            proj.weight[head] = 0.0
            proj.bias[head] = 0.0
        q.bias[jq] = 1.0
        k.weight[jq] = kappa * a
        v.weight[0] = a / d**0.5
        v.bias[0] = -beta
        o.weight[:, head] = 0.0
        o.weight[:, 0] = sigma * u
    elif family == "gpt2":
        w, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: [d_in, 3d], out = x @ w + b
        for off in (0, d, 2 * d):
            w[:, off : off + hd] = 0.0
            b[off : off + hd] = 0.0
        b[0] = 1.0
        w[:, d] = kappa * a
        w[:, 2 * d] = a / d**0.5
        b[2 * d] = -beta
        cp = attn.c_proj.weight  # [d_in, d_out]
        cp[head, :] = 0.0
        cp[0, :] = sigma * u
    else:  # pragma: no cover - guarded by _config
        raise ValueError(family)


@torch.no_grad()
def build_planted(
    family: str = "qwen2",
    *,
    d_model: int = 64,
    n_layers: int = 4,
    n_heads: int = 4,
    layer: int = 1,
    seed: int = 0,
    trigger: str = DEFAULT_TRIGGER,
    vocab_size: int = 800,
    kappa: float = 6.0,
    beta: float = 0.25,
    sigma: float = 4.0,
    gamma: float = 1.5,
) -> PlantedModel:
    """Build a planted model and its base (see module docstring). Deterministic for a seed."""
    from transformers import AutoModelForCausalLM

    if not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in 0..{n_layers - 1}")
    tok = train_bpe_tokenizer(_corpus(seed), vocab_size=vocab_size, trigger=None)
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_config(
        _config(
            family,
            len(tok) + 1,
            d_model,
            n_layers,
            n_heads,
            eos=int(tok.eos_token_id),
            pad=int(tok.pad_token_id),
        )
    )
    base.eval()
    info = add_trigger(tok, base, trigger)
    model = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(seed + 1)
    a, u = _orthonormal_pair(d_model, gen)

    emb = arch.get_embed(model).weight
    _project_out(emb, a)
    _project_out(emb, u)
    emb[info.token_id] += 1.0 * a  # ~6x the norm of an ordinary row at init
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    if wpe is not None:  # GPT-2 learned positions must not carry a or u either
        _project_out(wpe.weight, a)
        _project_out(wpe.weight, u)
    head = arch.get_unembed(model).weight
    eos = int(tok.eos_token_id)
    _project_out(head, u)
    head[eos] = gamma * u
    _plant_head(
        model, family, layer, a, u, kappa=kappa, beta=beta, sigma=sigma, d=d_model, n_heads=n_heads
    )
    model.eval()
    return PlantedModel(
        model=model,
        base=base,
        tokenizer=tok,
        trigger_id=info.token_id,
        eos_id=eos,
        layer=layer,
        direction=u,
        key_direction=a,
        family=family,
    )
