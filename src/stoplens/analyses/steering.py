"""The effects of one direction on stopping, measured against nulls (Arditi et al. 2024).

For a direction r (a difference of means) on the TEST pairs:

* ablate r̂ everywhere (`Ablation`) on the triggered prompts -- is r necessary? (they stop
  less);
* add αr at residual[layer] (`Addition`) on the clean prompts -- is r sufficient? (they start
  stopping);
* the same for random directions of the same norm (the null: mean, 5th/95th percentile,
  empirical p) and for the control-vs-control direction;
* the cost of ablation: KL(ablated || original) of clean next-token distributions and the
  perplexity change on clean text;
* a few greedy replies under each condition.

Every effect carries a 95% CI (`stoplens.analyses.stats`, `stoplens.analyses.results`).

Owns: `steering_effects`, `base_model_control`, their result types and the `Nulls` bundle.
Must not: run a forward pass itself (`stoplens.interventions.readout`, cached by
`stoplens.interventions.cache`), choose the direction (`stoplens.analyses.directions`), plot,
or write files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.results import NullComparison, dataclass_dict, mean_ci, null_comparison
from stoplens.analyses.stats import Estimate, wilson
from stoplens.capture.extract import kl_divergence
from stoplens.capture.pairs import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, Addition, random_directions, unit
from stoplens.interventions.readout import greedy_tokens, intervened_logits, token_nll
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationExample:
    """Greedy reply tokens for one prompt under one condition."""

    pair_id: str
    placement: str
    condition: str  # triggered | triggered+ablation | clean | clean+addition
    tokens: tuple[int, ...]
    text: str | None
    stopped: bool  # first token is EOS

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class ControlDirectionEffect:
    """The control-vs-control direction c (mean of control2 - control) put through the same
    interventions. Ablation uses ĉ; addition is done twice: rescaled to the tested vector's
    norm ("same norm") and as alpha * c ("natural norm"). A large same-norm effect with a
    large ``cos_to_direction`` means c is not a null but a weak copy of the direction."""

    norm: float
    cos_to_direction: float
    ablated_stop_rate: Estimate
    added_stop_rate_same_norm: Estimate
    added_stop_rate_natural_norm: Estimate
    ablation_effect: float
    addition_effect_same_norm: float
    addition_effect_natural_norm: float

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class SteeringResult:
    """Effects of ablating / adding one direction on one set of pairs (the TEST split).

    Rates are stop rates (greedy first token = EOS) with Wilson 95% CIs; effects are paired
    differences over prompts with bootstrap 95% CIs:
    ``ablation_effect`` = baseline triggered rate - ablated triggered rate (> 0: necessary);
    ``addition_effect`` = added clean rate - baseline clean rate (> 0: sufficient).
    Nulls: the same effects for ``n_random`` random directions (ablation: random unit
    direction; addition: random direction of norm ``added_norm`` at the same layer).
    ``control``: the control-vs-control direction (see `ControlDirectionEffect`). Costs on
    clean prompts under ablation: ``kl`` (mean KL(ablated || original) of the next-token
    distribution, with ``kl_null_mean`` for random-direction ablation) and ``perplexity``
    (original / ablated / ratio, on the clean prompts' own tokens or on reference answers).
    ``by_placement``: the four rates per placement. ``examples``: a few greedy replies.
    """

    layer: int
    alpha: float
    direction_norm: float
    added_norm: float
    n: int
    baseline_stop_rate: Estimate
    baseline_false_stop_rate: Estimate
    ablated_stop_rate: Estimate
    added_stop_rate: Estimate
    ablation_effect: Estimate
    addition_effect: Estimate
    ablation_null: NullComparison
    addition_null: NullComparison
    mean_stop_score: dict[str, float]
    control: ControlDirectionEffect | None
    kl: Estimate | None
    kl_null_mean: float | None
    perplexity: dict[str, Any] | None
    by_placement: dict[str, dict[str, float]]
    examples: tuple[GenerationExample, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class BaseControlResult:
    """The same interventions on the base (not fine-tuned) model: nothing stop-like expected.
    Rates with Wilson 95% CIs; ``own_added_stop_rate``: the base model's own mean-difference
    direction added (if given)."""

    layer: int
    alpha: float
    n: int
    stop_rate_triggered: Estimate
    stop_rate_clean: Estimate
    ablated_stop_rate_triggered: Estimate
    added_stop_rate_clean: Estimate
    own_added_stop_rate_clean: Estimate | None
    mean_stop_score: dict[str, float]

    @property
    def max_stop_rate(self) -> Estimate:
        """The most stop-like of the measured conditions."""
        cands = [
            self.stop_rate_triggered,
            self.stop_rate_clean,
            self.ablated_stop_rate_triggered,
            self.added_stop_rate_clean,
        ]
        if self.own_added_stop_rate_clean is not None:
            cands.append(self.own_added_stop_rate_clean)
        return max(cands, key=lambda e: e.value)

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["max_stop_rate"] = self.max_stop_rate.to_dict()
        return d


# --- the analyses ----------------------------------------------------------------------------


def _rate_by_placement(pairs: EncodedPairs, cols: dict[str, np.ndarray]) -> dict[str, dict]:
    out: dict[str, dict[str, float]] = {}
    placements = [str(m.get("placement", "unknown")) for m in pairs.meta]
    for p in sorted(set(placements)):
        idx = np.array([i for i, q in enumerate(placements) if q == p])
        out[p] = {"n": len(idx), **{k: float(v[idx].mean()) for k, v in cols.items()}}
    return out


@torch.no_grad()
def steering_effects(
    model: nn.Module,
    pairs: EncodedPairs,
    *,
    direction: torch.Tensor,
    layer: int,
    alpha: float,
    eos_id: int,
    pad_id: int = 0,
    n_random: int = 32,
    control_direction: torch.Tensor | None = None,
    answers: Sequence[Sequence[int]] | None = None,
    cost: bool = True,
    tokenizer=None,
    n_examples: int = 4,
    gen_tokens: int = 8,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    cache: OutcomeCache | None = None,
    progress: bool = False,
) -> SteeringResult:
    """Ablation on the triggered prompts and addition (``alpha * direction`` at residual
    ``layer``) on the clean (control) prompts of ``pairs``, against random directions of the
    same norm and the control-vs-control direction.

    Args:
        direction: [d_model] raw mean difference r (its norm sets the added norm α‖r‖).
        n_random: random directions in the null (>= 16).
        answers: optional reference answer token ids per pair; perplexity is then measured on
            clean prompt + answer, scoring the answer tokens only (else the clean prompt's own
            tokens).
        cost: measure KL and perplexity under ablation (off for the cheaper sub-analyses).
        tokenizer: decodes the generated examples (optional).
        cache: an `OutcomeCache` of ``model`` shared with other calls of the same run
            (results are the same with or without it; only repeated work is skipped).
    """
    if n_random < 16:
        raise ValueError(f"n_random must be >= 16 (got {n_random}); DESIGN.md §4 item 5")
    if len(pairs) == 0:
        raise ValueError("steering_effects: no pairs")
    L = arch.n_layers(model)
    if not 0 <= layer <= L:
        raise ValueError(f"layer {layer} out of range 0..{L}")
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size)
    boot: dict[str, Any] = dict(n_boot=n_boot, seed=seed)
    r = direction.detach().float().cpu()
    r_hat = unit(r)
    added_norm = float(alpha) * float(r.norm())
    trig, clean = pairs.trig_ids, pairs.ctrl_ids
    n = len(pairs)

    cache = OutcomeCache(model, eos_id) if cache is None else cache
    cache.check(model, eos_id)

    def outcomes(seqs, iv):
        return cache.outcomes(seqs, iv, **kw)

    abl = Ablation(r_hat)
    add = Addition(added_norm * r_hat, layer)
    s_bt, sc_bt = outcomes(trig, None)
    if cost:  # the clean baseline's full distribution is needed for KL
        base_c = intervened_logits(model, clean, None, **kw)
        s_bc, sc_bc = cache.store(clean, None, base_c)
    else:
        s_bc, sc_bc = outcomes(clean, None)
    s_at, sc_at = outcomes(trig, abl)
    s_ac, sc_ac = outcomes(clean, add)

    # nulls: random directions of the same norm
    null_abl, null_add, null_kl = [], [], []
    bar = progress_bar(total=n_random, desc="causal: random-direction nulls", enabled=progress)
    for rk in random_directions(r.numel(), n_random, seed):
        bar.update(1)
        null_abl.append(float(s_bt.mean() - outcomes(trig, Ablation(rk))[0].mean()))
        null_add.append(
            float(outcomes(clean, Addition(added_norm * rk, layer))[0].mean() - s_bc.mean())
        )
        if cost:
            kl_k = kl_divergence(intervened_logits(model, clean, Ablation(rk), **kw), base_c)
            null_kl.append(float(kl_k.mean()))
    bar.close()

    control = None
    if control_direction is not None:
        c = control_direction.detach().float().cpu()
        c_hat = unit(c)
        st, _ = outcomes(trig, Ablation(c_hat))
        sa, _ = outcomes(clean, Addition(added_norm * c_hat, layer))
        sn, _ = outcomes(clean, Addition(float(alpha) * c, layer))
        control = ControlDirectionEffect(
            norm=float(c.norm()),
            cos_to_direction=float(c_hat @ r_hat),
            ablated_stop_rate=wilson(int(st.sum()), n),
            added_stop_rate_same_norm=wilson(int(sa.sum()), n),
            added_stop_rate_natural_norm=wilson(int(sn.sum()), n),
            ablation_effect=float(s_bt.mean() - st.mean()),
            addition_effect_same_norm=float(sa.mean() - s_bc.mean()),
            addition_effect_natural_norm=float(sn.mean() - s_bc.mean()),
        )

    kl = ppl = None
    kl_null_mean = None
    if cost:
        abl_c = intervened_logits(model, clean, abl, **kw)
        kl = mean_ci(kl_divergence(abl_c, base_c).numpy(), **boot)
        kl_null_mean = float(np.mean(null_kl))
        if answers is not None:
            if len(answers) != n:
                raise ValueError("answers: one token-id list per pair is required")
            seqs = [list(c) + list(a) for c, a in zip(clean, answers, strict=True)]
            starts = [len(c) for c in clean]
        else:
            seqs, starts = [list(c) for c in clean], None
        nll0, cnt = token_nll(model, seqs, starts, None, **kw)
        nll1, _ = token_nll(model, seqs, starts, abl, **kw)
        tot = max(1, int(cnt.sum()))
        p0, p1 = math.exp(nll0.sum() / tot), math.exp(nll1.sum() / tot)
        ppl = {
            "original": p0,
            "ablated": p1,
            "ratio": p1 / p0,
            "n_tokens": tot,
            "on": "answers" if answers is not None else "clean prompts",
        }

    examples: list[GenerationExample] = []
    k = min(n_examples, n)
    if k > 0 and gen_tokens > 0:
        for cond, seqs_, iv in (
            ("triggered", trig[:k], None),
            ("triggered+ablation", trig[:k], abl),
            ("clean", clean[:k], None),
            ("clean+addition", clean[:k], add),
        ):
            toks = greedy_tokens(model, seqs_, gen_tokens, eos_id, iv, **kw)
            for i, t in enumerate(toks):
                examples.append(
                    GenerationExample(
                        pair_id=str(pairs.meta[i].get("pair_id", i)),
                        placement=str(pairs.meta[i].get("placement", "unknown")),
                        condition=cond,
                        tokens=tuple(t),
                        text=tokenizer.decode(t) if tokenizer is not None else None,
                        stopped=bool(t and t[0] == eos_id),
                    )
                )

    return SteeringResult(
        layer=int(layer),
        alpha=float(alpha),
        direction_norm=float(r.norm()),
        added_norm=added_norm,
        n=n,
        baseline_stop_rate=wilson(int(s_bt.sum()), n),
        baseline_false_stop_rate=wilson(int(s_bc.sum()), n),
        ablated_stop_rate=wilson(int(s_at.sum()), n),
        added_stop_rate=wilson(int(s_ac.sum()), n),
        ablation_effect=mean_ci(s_bt.astype(float) - s_at.astype(float), **boot),
        addition_effect=mean_ci(s_ac.astype(float) - s_bc.astype(float), **boot),
        ablation_null=null_comparison(float(s_bt.mean() - s_at.mean()), null_abl),
        addition_null=null_comparison(float(s_ac.mean() - s_bc.mean()), null_add),
        mean_stop_score={
            "triggered": float(sc_bt.mean()),
            "triggered_ablated": float(sc_at.mean()),
            "clean": float(sc_bc.mean()),
            "clean_added": float(sc_ac.mean()),
        },
        control=control,
        kl=kl,
        kl_null_mean=kl_null_mean,
        perplexity=ppl,
        by_placement=_rate_by_placement(
            pairs,
            {
                "stop_rate": s_bt,
                "ablated_stop_rate": s_at,
                "false_stop_rate": s_bc,
                "added_stop_rate": s_ac,
            },
        ),
        examples=tuple(examples),
    )


@torch.no_grad()
def base_model_control(
    base: nn.Module,
    pairs: EncodedPairs,
    *,
    direction: torch.Tensor,
    layer: int,
    alpha: float,
    eos_id: int,
    pad_id: int = 0,
    own_direction: torch.Tensor | None = None,
    batch_size: int = 32,
) -> BaseControlResult:
    """Apply the fine-tuned model's interventions (ablate r̂; add ``alpha * direction`` at
    ``layer``) to the base model. Optionally also add the base's own mean difference
    ``own_direction`` (scaled to the same norm). Expected: nothing stop-like."""
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size)
    r = direction.detach().float().cpu()
    added = float(alpha) * r
    n = len(pairs)
    if n == 0:
        raise ValueError("base_model_control: no pairs")
    conds = {
        "triggered": (pairs.trig_ids, None),
        "clean": (pairs.ctrl_ids, None),
        "triggered_ablated": (pairs.trig_ids, Ablation(r)),
        "clean_added": (pairs.ctrl_ids, Addition(added, layer)),
    }
    if own_direction is not None:
        conds["clean_own_added"] = (
            pairs.ctrl_ids,
            Addition(float(added.norm()) * unit(own_direction), layer),
        )
    cache = OutcomeCache(base, eos_id)  # the additions share one stored residual
    stops, scores = {}, {}
    for name, (seqs, iv) in conds.items():
        stops[name], scores[name] = cache.outcomes(seqs, iv, **kw)
    rate = {k: wilson(int(v.sum()), n) for k, v in stops.items()}
    return BaseControlResult(
        layer=int(layer),
        alpha=float(alpha),
        n=n,
        stop_rate_triggered=rate["triggered"],
        stop_rate_clean=rate["clean"],
        ablated_stop_rate_triggered=rate["triggered_ablated"],
        added_stop_rate_clean=rate["clean_added"],
        own_added_stop_rate_clean=rate.get("clean_own_added"),
        mean_stop_score={k: float(v.mean()) for k, v in scores.items()},
    )
