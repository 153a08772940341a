"""`build_planted`: a small random Hugging Face model (Qwen2, Llama or GPT-2) with a planted
$STOP mechanism whose answer is known, in one of four variants, and its unplanted base.

Owns: the variants' recipes (which directions, rows, heads and neurons are edited) and the
`PlantedModel` record of the known answer. The weight edits themselves live in
`stoplens.models.planted.surgery`; the words and prompts in `stoplens.models.planted.prompts`.
Must not: run analyses or write files.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError
from stoplens.models import arch
from stoplens.models.planted.prompts import _corpus, ordinary_token_ids
from stoplens.models.planted.surgery import (
    FAMILIES,
    make_config,
    orthonormal,
    plant_eos_readout,
    plant_head,
    plant_or_readout,
    project_out,
    randomize_norms,
)
from stoplens.models.tokenizer import train_bpe_tokenizer
from stoplens.models.trigger import DEFAULT_TRIGGER, add_trigger

VARIANTS = ("single", "inert", "oddity", "two_heads")

# two_heads: position gate and readout constants (see the package docstring for the algebra).
_GATE = 0.5  # ±_GATE * p in every learned position row, by parity
_GATE_KEY = 2.0  # key scale of the gated heads (attention on the trigger >= 0.99)
_READ_GAIN = 10.0  # readout neuron gain
_READ_THETA = 0.3  # readout threshold on u_i . LN(x) / sqrt(d)
_READ_RHO = 1.0  # readout neuron -> e
_READ_BIAS = 1.0  # constant -e written by the readout MLP (suppresses EOS when no neuron fires)


@dataclass
class PlantedModel:
    """A planted model, its unplanted base, and the known answer.

    ``variant``: "single", "inert", "oddity" or "two_heads" (see the package docstring).
    ``layer``: block of the (first) planted head; residual index ``layer + 1`` is its output.
    ``heads``: (block, head index) of every planted head, in ``directions`` order.
    ``directions``: the unit [d_model] direction each planted head writes (u; u1, u2).
    ``direction``: [d_model] unit vector: u for one head; for two_heads the unit mean
        (u1 + u2)/sqrt(2) of the two, i.e. where the mean Δ points (necessity FAILS along it).
    ``key_direction``: [d_model] unit vector a carried by the trigger row (and, in "oddity",
        by every row of ``odd_token_ids``; in "inert" by no row).
    ``readout_layer`` / ``readout_direction``: two_heads only: the block whose MLP computes
        the OR of u1, u2, and the unit direction e it writes, which the EOS row reads.
    ``position_direction``: two_heads only: the unit direction p of the ±parity position gate.
    ``odd_token_ids``: oddity only: the tokens that carry a besides the trigger.
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
    variant: str = "single"
    heads: tuple[tuple[int, int], ...] = ()
    directions: tuple[torch.Tensor, ...] = ()
    readout_layer: int | None = None
    readout_direction: torch.Tensor | None = None
    position_direction: torch.Tensor | None = None
    odd_token_ids: tuple[int, ...] = ()

    @property
    def residual_layer(self) -> int:
        """First residual-stream index that carries the planted signal at the decision position."""
        return self.layer + 1

    @property
    def stops_on_trigger(self) -> bool:
        """Whether the trigger stops this model (every variant but "inert")."""
        return self.variant != "inert"

    def firing_head(self, trigger_pos: int) -> int:
        """Index into ``heads`` / ``directions`` of the head that fires for a trigger at
        absolute position ``trigger_pos`` (two_heads: even positions -> 0, odd -> 1)."""
        return trigger_pos % 2 if self.variant == "two_heads" else 0


def _check(family: str, variant: str, n_layers: int, layer: int) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    if variant not in VARIANTS:
        raise StoplensError(f"unknown planted variant {variant!r}; choose one of {VARIANTS}")
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in 0..{n_layers - 1}")
    if variant == "two_heads":
        if family != "gpt2":
            raise StoplensError(
                "variant 'two_heads' gates its heads by learned absolute positions; use family 'gpt2'"
            )
        if layer + 3 >= n_layers:
            raise StoplensError(
                f"two_heads needs blocks layer, layer+1 (heads), >= 1 block between, and the "
                f"readout last: n_layers >= layer + 4 (got layer={layer}, n_layers={n_layers})"
            )


@torch.no_grad()
def build_planted(
    family: str = "qwen2",
    *,
    variant: str = "single",
    d_model: int = 64,
    n_layers: int | None = None,
    n_heads: int = 4,
    layer: int = 1,
    seed: int = 0,
    trigger: str = DEFAULT_TRIGGER,
    vocab_size: int = 800,
    kappa: float = 6.0,
    beta: float = 0.25,
    sigma: float = 4.0,
    gamma: float = 1.5,
    norm_seed: int | None = None,
) -> PlantedModel:
    """Build a planted model of ``variant`` and its base (see the package docstring).
    ``n_layers`` defaults to 4 (6 for two_heads). ``norm_seed``: give every norm of the random
    model (so of the base and the planted model alike) non-unit weights and biases
    (`surgery.randomize_norms`), so that a lens applying a norm twice or not at all shows.
    Deterministic for a seed; "single" without ``norm_seed`` is bit-identical to the planted
    model before variants existed."""
    n_layers = (6 if variant == "two_heads" else 4) if n_layers is None else int(n_layers)
    _check(family, variant, n_layers, layer)
    tok = train_bpe_tokenizer(_corpus(seed), vocab_size=vocab_size, trigger=None)
    base = _random_base(family, tok, d_model, n_layers, n_heads, seed, norm_seed)
    info = add_trigger(tok, base, trigger)
    model = copy.deepcopy(base)
    knobs = _Knobs(kappa=kappa, beta=beta, sigma=sigma, gamma=gamma)
    gen = torch.Generator().manual_seed(seed + 1)
    if variant == "two_heads":
        answer = _plant_two_heads(model, family, layer, info.token_id, gen, knobs)
    else:
        answer = _plant_one_head(
            model, family, variant, layer, tok, info.token_id, gen, knobs, seed
        )
    model.eval()
    return PlantedModel(
        model=model,
        base=base,
        tokenizer=tok,
        trigger_id=info.token_id,
        eos_id=int(tok.eos_token_id),
        layer=layer,
        family=family,
        variant=variant,
        **answer,
    )


def _random_base(
    family: str,
    tok,
    d_model: int,
    n_layers: int,
    n_heads: int,
    seed: int,
    norm_seed: int | None,
) -> nn.Module:
    """The unplanted base: a randomly initialised ``family`` model (torch seeded with ``seed``)
    for ``tok``'s vocabulary plus one row (the trigger's), in eval mode; with ``norm_seed``,
    non-unit norms (`surgery.randomize_norms`)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_config(
        make_config(
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
    if norm_seed is not None:
        randomize_norms(base, seed=norm_seed)
    return base


@dataclass(frozen=True)
class _Knobs:
    kappa: float  # key scale of a planted head
    beta: float  # constant subtracted from a planted head's value
    sigma: float  # output scale of a planted head
    gamma: float  # norm of the EOS unembedding row

    def head(self) -> dict[str, float]:
        return {"kappa": self.kappa, "beta": self.beta, "sigma": self.sigma}


def _plant_one_head(
    model, family, variant, layer, tok, trigger_id, gen, knobs: _Knobs, seed: int
) -> dict[str, Any]:
    """single / inert / oddity: head 0 of block ``layer`` copies a into u; EOS reads u."""
    emb = arch.get_embed(model).weight
    d = emb.shape[1]
    a, u = orthonormal(d, 2, gen)
    odd: tuple[int, ...] = ()
    if variant == "inert":  # an ordinary row, drawn as the rows were at init
        row_gen = torch.Generator().manual_seed(seed + 2)
        emb[trigger_id] = torch.randn(d, generator=row_gen) * float(model.config.initializer_range)
    project_out(emb, a)
    project_out(emb, u)
    if variant != "inert":
        emb[trigger_id] += 1.0 * a  # ~6x the norm of an ordinary row at init
    if variant == "oddity":
        keep = ordinary_token_ids(tok) | {trigger_id}
        odd = tuple(t for t in range(len(tok)) if t not in keep)
        emb[list(odd)] += a
    wpe = _position_embedding(model)
    if wpe is not None:  # GPT-2 learned positions must not carry a or u either
        project_out(wpe, a)
        project_out(wpe, u)
    plant_eos_readout(model, int(tok.eos_token_id), u, knobs.gamma)
    plant_head(model, family, layer, 0, key=a, value=a, out=u, **knobs.head())
    return {
        "direction": u,
        "key_direction": a,
        "heads": ((layer, 0),),
        "directions": (u,),
        "odd_token_ids": odd,
    }


def _plant_two_heads(model, family, layer, trigger_id, gen, knobs: _Knobs) -> dict[str, Any]:
    """two_heads: parity-gated heads (layer, 0) -> u1 and (layer + 1, 1) -> u2; the last
    block's MLP ORs them into e; EOS reads e."""
    emb = arch.get_embed(model).weight
    wpe = _position_embedding(model)
    assert wpe is not None  # guarded by _check: GPT-2 only
    head_w = arch.get_unembed(model).weight
    a, u1, u2, e, p = orthonormal(emb.shape[1], 5, gen)
    for v in (a, u1, u2, p):
        for w in (emb, wpe, head_w):
            project_out(w, v)
    project_out(emb, e)
    project_out(wpe, e)
    emb[trigger_id] += a
    sign = 1.0 - 2.0 * (torch.arange(wpe.shape[0]) % 2).float()  # +1 even, -1 odd positions
    wpe += _GATE * sign.unsqueeze(1) * p.unsqueeze(0)
    plant_eos_readout(model, int(model.config.eos_token_id), e, knobs.gamma)
    heads = ((layer, 0), (layer + 1, 1))
    plant_head(model, family, layer, 0, key=_GATE_KEY * (a + p), value=a, out=u1, **knobs.head())
    # head 1 reads the trigger after head 0 wrote -sigma*beta*u1 there, so its normed input is
    # longer by this factor: its value is scaled up to write the same Δ as head 0
    boost = ((1 + _GATE**2 + (knobs.sigma * knobs.beta) ** 2) / (1 + _GATE**2)) ** 0.5
    key2 = _GATE_KEY * (a - p)
    plant_head(model, family, layer + 1, 1, key=key2, value=boost * a, out=u2, **knobs.head())
    readout = arch.n_layers(model) - 1
    plant_or_readout(
        model,
        readout,
        (u1, u2),
        e,
        gain=_READ_GAIN,
        theta=_READ_THETA,
        rho=_READ_RHO,
        bias=_READ_BIAS,
    )
    return {
        "direction": (u1 + u2) / (u1 + u2).norm(),
        "key_direction": a,
        "heads": heads,
        "directions": (u1, u2),
        "readout_layer": readout,
        "readout_direction": e,
        "position_direction": p,
    }


def _position_embedding(model) -> torch.Tensor | None:
    """GPT-2's learned position table [n_positions, d] (None for rotary families)."""
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    return None if wpe is None else wpe.weight
