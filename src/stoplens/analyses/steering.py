"""The effects of one direction on stopping, measured against nulls (Arditi et al. 2024).

For a direction r (a difference of means) on the TEST pairs:

* ablate r̂ everywhere (`Ablation`) on the triggered prompts -- is r necessary? (they stop
  less);
* add αr at residual[layer] (`Addition`) on the clean prompts -- is r sufficient? (they start
  stopping);
* the same for random directions of the same norm (the null: mean, 5th/95th percentile,
  empirical p; run on at most ``Nulls.max_prompts`` of the pairs, stratified by placement,
  and ranked against the direction's effect on the same pairs) and for the
  control-vs-control direction;
* the cost of ablation: KL(ablated || original) of clean next-token distributions and the
  perplexity change on clean text (`stoplens.analyses.ablation_cost`);
* a few greedy replies under each condition.

Every effect carries a 95% CI (`stoplens.analyses.stats`, `stoplens.analyses.results`).

Owns: `steering_effects`, its result types and the `Steering` / `Examples` bundles.
Must not: run a forward pass itself (`stoplens.interventions.readout`, cached by
`stoplens.interventions.cache`), choose the direction (`stoplens.analyses.directions`), plot,
or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stoplens.analyses.ablation_cost import AblationCost, ablation_cost
from stoplens.analyses.generations import GenerationExample, greedy_examples
from stoplens.analyses.results import NullComparison, Nulls, dataclass_dict, null_comparison
from stoplens.analyses.stats import Estimate, wilson
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import kl_divergence
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, Addition, unit
from stoplens.interventions.readout import Readout
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

# --- what is tested, and against what ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Steering:
    """One direction as the two interventions test it: ``direction`` r ([d_model], the raw
    mean difference) is ablated as r̂ everywhere, and α r (norm ``added_norm`` = α‖r‖) is
    added at residual[``layer``]. A `DirectionSelection` has the same three fields."""

    direction: torch.Tensor
    layer: int
    alpha: float

    @classmethod
    def of(cls, selection: Any) -> Steering:
        """The selected direction, layer and α of a `DirectionSelection`."""
        return cls(selection.direction, selection.layer, selection.alpha)

    @property
    def r(self) -> torch.Tensor:
        return self.direction.detach().float().cpu()

    @property
    def added_norm(self) -> float:
        return float(self.alpha) * float(self.r.norm())

    def ablation(self, v: torch.Tensor | None = None) -> Ablation:
        """Ablate r̂ (or the unit vector of ``v``)."""
        return Ablation(unit(self.r if v is None else v))

    def addition(self, v: torch.Tensor | None = None) -> Addition:
        """Add α r (or ``v`` rescaled to the same norm) at ``layer``."""
        return Addition(self.added_norm * unit(self.r if v is None else v), self.layer)


@dataclass(frozen=True)
class Examples:
    """Greedy replies to show: the first ``n`` pairs, up to ``tokens`` tokens each, decoded
    with ``tokenizer`` when given."""

    n: int = 4
    tokens: int = 8
    tokenizer: Any = None


# --- results --------------------------------------------------------------------------------


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
    direction; addition: random direction of norm ``added_norm`` at the same layer), on the
    pairs `stoplens.analyses.results.null_prompts` keeps; their ``observed`` is the
    direction's effect on those pairs (``n_prompts``).
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


# --- the analyses ----------------------------------------------------------------------------

Outcomes = dict[str, tuple[np.ndarray, np.ndarray]]
"""Condition name -> (stops bool [n], stop scores float64 [n]) over the pairs."""


BY_PLACEMENT = {
    "stop_rate": "triggered",
    "ablated_stop_rate": "triggered_ablated",
    "false_stop_rate": "clean",
    "added_stop_rate": "clean_added",
}
"""Per-placement rate name -> the condition whose stops it averages."""


def _rate_by_placement(pairs: EncodedPairs, cols: dict[str, np.ndarray]) -> dict[str, dict]:
    out: dict[str, dict[str, float]] = {}
    placements = pairs.placements()
    for p in sorted(set(placements)):
        idx = np.array([i for i, q in enumerate(placements) if q == p])
        out[p] = {"n": len(idx), **{k: float(v[idx].mean()) for k, v in cols.items()}}
    return out


def _conditions(steering: Steering) -> dict[str, tuple[str, Any]]:
    """The four conditions by name: (which prompts, intervention)."""
    return {
        "triggered": ("triggered", None),
        "triggered_ablated": ("triggered", steering.ablation()),
        "clean": ("clean", None),
        "clean_added": ("clean", steering.addition()),
    }


def _prompts(pairs: EncodedPairs, which: str) -> list[list[int]]:
    return pairs.trig_ids if which == "triggered" else pairs.ctrl_ids


def _outcomes(
    readout: Readout, cache: OutcomeCache, pairs: EncodedPairs, steering: Steering, cost: bool
) -> tuple[Outcomes, torch.Tensor | None]:
    """Stop outcomes of the four conditions, and (when ``cost``) the clean prompts' full
    next-token logits [n, vocab], which the KL cost compares against."""
    clean_logits = None
    out: Outcomes = {}
    for name, (which, iv) in _conditions(steering).items():
        seqs = _prompts(pairs, which)
        if name == "clean" and cost:
            clean_logits = readout.logits(seqs)
            out[name] = cache.store(seqs, None, clean_logits)
        else:
            out[name] = cache.read(readout, seqs, iv)
    return out, clean_logits


def _effects(out: Outcomes) -> dict[str, np.ndarray]:
    """Per-prompt paired effects: ablation = triggered - ablated, addition = added - clean."""
    f = {k: v[0].astype(float) for k, v in out.items()}
    return {
        "ablation": f["triggered"] - f["triggered_ablated"],
        "addition": f["clean_added"] - f["clean"],
    }


def _observed(out: Outcomes) -> dict[str, float]:
    """The two effects as differences of stop rates, computed exactly as the null's are."""
    rate = {k: v[0].mean() for k, v in out.items()}
    return {
        "ablation": float(rate["triggered"] - rate["triggered_ablated"]),
        "addition": float(rate["clean_added"] - rate["clean"]),
    }


def _random_nulls(
    readout: Readout,
    cache: OutcomeCache,
    pairs: EncodedPairs,
    steering: Steering,
    nulls: Nulls,
    out: Outcomes,
    clean_logits: torch.Tensor | None,
    progress: bool,
) -> dict[str, Any]:
    """The ablation and addition effects of each random direction of the same norm (and, with
    ``clean_logits``, the KL cost of the first ``nulls.n_kl``), on the prompts
    ``nulls.prompts`` chooses, with the selected direction's two effects on the same prompts
    (``observed``: what the rank test compares) and their number (``n_prompts``)."""
    idx = nulls.prompts(pairs.placements(), pairs.pair_ids())
    sub = pairs if len(idx) == len(pairs) else pairs.subset([int(i) for i in idx])
    base_t, base_c = out["triggered"][0][idx].mean(), out["clean"][0][idx].mean()
    null: dict[str, Any] = {"ablation": [], "addition": [], "kl": []}
    bar = progress_bar(
        total=nulls.n_random,
        desc=f"causal: random-direction nulls on {len(sub)} prompts",
        enabled=progress,
    )
    for k, rk in enumerate(nulls.directions(steering.r.numel())):
        bar.update(1)
        ablated = cache.read(readout, sub.trig_ids, Ablation(rk))[0]
        added = cache.read(
            readout, sub.ctrl_ids, Addition(steering.added_norm * rk, steering.layer)
        )[0]
        null["ablation"].append(float(base_t - ablated.mean()))
        null["addition"].append(float(added.mean() - base_c))
        if clean_logits is not None and k < nulls.n_kl:
            kl = kl_divergence(readout.logits(sub.ctrl_ids, Ablation(rk)), clean_logits[idx])
            null["kl"].append(float(kl.mean()))
    bar.close()
    null["observed"] = _observed({k: (v[0][idx], v[1][idx]) for k, v in out.items()})
    null["n_prompts"] = len(sub)
    return null


def _control_effect(
    readout: Readout,
    cache: OutcomeCache,
    pairs: EncodedPairs,
    steering: Steering,
    c: torch.Tensor,
    out: Outcomes,
) -> ControlDirectionEffect:
    """The control-vs-control direction ``c`` through the same interventions (same norm and
    natural norm α c for the addition)."""
    c = c.detach().float().cpu()
    n = len(pairs)
    st, _ = cache.read(readout, pairs.trig_ids, steering.ablation(c))
    sa, _ = cache.read(readout, pairs.ctrl_ids, steering.addition(c))
    sn, _ = cache.read(readout, pairs.ctrl_ids, Addition(float(steering.alpha) * c, steering.layer))
    base_t, base_c = out["triggered"][0].mean(), out["clean"][0].mean()
    return ControlDirectionEffect(
        norm=float(c.norm()),
        cos_to_direction=float(unit(c) @ unit(steering.r)),
        ablated_stop_rate=wilson(int(st.sum()), n),
        added_stop_rate_same_norm=wilson(int(sa.sum()), n),
        added_stop_rate_natural_norm=wilson(int(sn.sum()), n),
        ablation_effect=float(base_t - st.mean()),
        addition_effect_same_norm=float(sa.mean() - base_c),
        addition_effect_natural_norm=float(sn.mean() - base_c),
    )


def _examples(
    readout: Readout, pairs: EncodedPairs, steering: Steering, examples: Examples
) -> tuple[GenerationExample, ...]:
    """Greedy replies of the first pairs under each of the four conditions."""
    k = min(examples.n, len(pairs))
    if k <= 0 or examples.tokens <= 0:
        return ()
    labels = {"triggered": "triggered", "triggered_ablated": "triggered+ablation"}
    labels |= {"clean": "clean", "clean_added": "clean+addition"}
    out: tuple[GenerationExample, ...] = ()
    for name, (which, iv) in _conditions(steering).items():
        out += greedy_examples(
            readout, pairs, which, iv, condition=labels[name], k=k, n_tokens=examples.tokens,
            tokenizer=examples.tokenizer,
        )  # fmt: skip
    return out


def _check(readout: Readout, pairs: EncodedPairs, steering: Steering) -> None:
    if len(pairs) == 0:
        raise ValueError("steering_effects: no pairs")
    L = arch.n_layers(readout.model)
    if not 0 <= steering.layer <= L:
        raise ValueError(f"layer {steering.layer} out of range 0..{L}")


@torch.no_grad()
def steering_effects(
    readout: Readout,
    pairs: EncodedPairs,
    steering: Steering,
    *,
    nulls: Nulls = Nulls(),
    control_direction: torch.Tensor | None = None,
    answers: Sequence[Sequence[int]] | None = None,
    cost: bool = True,
    examples: Examples = Examples(),
    cache: OutcomeCache | None = None,
    progress: bool = False,
) -> SteeringResult:
    """Ablate r̂ on the triggered prompts and add α r at residual[layer] on the clean (control)
    prompts of ``pairs``; the same for random directions of the same norm (``nulls``) and for
    the control-vs-control direction ``control_direction`` (optional).

    Args:
        answers: optional reference answer token ids per pair; perplexity is then measured on
            clean prompt + answer, scoring the answer tokens only (else the clean prompt's own
            tokens).
        cost: measure KL and perplexity under ablation (off for the cheaper sub-analyses).
        examples: greedy replies to keep (``Examples(n=0)``: none).
        cache: an `OutcomeCache` of the readout's model shared with other calls of the same
            run (results are the same with or without it; only repeated work is skipped).
    """
    _check(readout, pairs, steering)
    cache = OutcomeCache.of(readout) if cache is None else cache
    out, clean_logits = _outcomes(readout, cache, pairs, steering, cost)
    null = _random_nulls(readout, cache, pairs, steering, nulls, out, clean_logits, progress)
    control = None
    if control_direction is not None:
        control = _control_effect(readout, cache, pairs, steering, control_direction, out)
    costs = None
    if clean_logits is not None:
        costs = ablation_cost(
            readout, pairs, steering.ablation(), clean_logits, null["kl"], nulls, answers
        )
    shown = _examples(readout, pairs, steering, examples)
    return _result(pairs, steering, nulls, out, null, control, costs, shown)


def _compare(null: dict[str, Any], kind: str) -> NullComparison:
    """The selected direction's ``kind`` effect on the null's prompts against the null."""
    return null_comparison(null["observed"][kind], null[kind], null["n_prompts"])


def _result(
    pairs: EncodedPairs,
    steering: Steering,
    nulls: Nulls,
    out: Outcomes,
    null: dict[str, Any],
    control: ControlDirectionEffect | None,
    costs: AblationCost | None,
    shown: tuple[GenerationExample, ...],
) -> SteeringResult:
    """The outcomes as a `SteeringResult`: Wilson stop rates, paired effects with CIs, the
    effects against the random-direction nulls, and the rates per placement."""
    effect = _effects(out)
    n = len(pairs)
    rate = {k: wilson(int(v[0].sum()), n) for k, v in out.items()}
    return SteeringResult(
        layer=int(steering.layer),
        alpha=float(steering.alpha),
        direction_norm=float(steering.r.norm()),
        added_norm=steering.added_norm,
        n=n,
        baseline_stop_rate=rate["triggered"],
        baseline_false_stop_rate=rate["clean"],
        ablated_stop_rate=rate["triggered_ablated"],
        added_stop_rate=rate["clean_added"],
        ablation_effect=nulls.ci(effect["ablation"]),
        addition_effect=nulls.ci(effect["addition"]),
        ablation_null=_compare(null, "ablation"),
        addition_null=_compare(null, "addition"),
        mean_stop_score={k: float(v[1].mean()) for k, v in out.items()},
        control=control,
        kl=None if costs is None else costs.kl,
        kl_null_mean=None if costs is None else costs.kl_null_mean,
        perplexity=None if costs is None else costs.perplexity,
        by_placement=_rate_by_placement(pairs, {k: out[c][0] for k, c in BY_PLACEMENT.items()}),
        examples=shown,
    )
