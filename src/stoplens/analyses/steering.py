"""Interventions along a direction and their effects on stopping, measured against nulls.

Two interventions (Arditi et al. 2024), both built from `stoplens.capture.hooks`:

* directional ablation: x -> x - (x.r̂) r̂ at every block input, attention output and MLP
  output, at all positions -- "is the direction necessary?" (triggered prompts stop less);
* activation addition: x -> x + α r at residual[layer], all positions -- "is it sufficient?"
  (clean prompts start stopping).

"Stop" is the greedy first reply token being EOS (argmax of the last-position logits); the
stop score is log p(EOS) - log(1 - p(EOS)) at that position. Every effect is reported with a
95% CI, against >= 16 random directions of the same norm (null mean, 5th/95th percentile, an
empirical p-value) and against the control-vs-control direction; the cost of ablation is the
KL(ablated || original) of next-token distributions and the perplexity change on clean text.

Owns: the intervention primitives (`Ablation`, `SubspaceAblation`, `Addition`, logits / NLL /
greedy tokens under an intervention), `OutcomeCache` (never the same forward twice within a run) and
`steering_effects` / `base_model_control`. Must not: choose the direction
(`stoplens.analyses.directions`), plot, or write files.

Intervals come from `stoplens.analyses.stats`; the random-direction null comparison
(`null_comparison`) is defined here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.stats import Estimate, bootstrap_mean, jsonable, wilson
from stoplens.capture.extract import (
    Resume,
    kl_divergence,
    last_logits,
    model_device,
    pad_batch,
    residual_sequences,
    resume_from,
    run_batched,
    stop_score,
)
from stoplens.capture.hooks import (
    add_hooks,
    addition_edit,
    directional_ablation_hooks,
    residual_edit_hooks,
    subspace_ablation_hooks,
)
from stoplens.capture.pairs import EncodedPairs
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

# --- interventions ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Ablation:
    """Directional ablation of ``direction`` ([d_model], any norm) everywhere (see module doc)."""

    direction: torch.Tensor

    def hooks(self, model: nn.Module):
        return directional_ablation_hooks(model, self.direction)


@dataclass(frozen=True, eq=False)
class SubspaceAblation:
    """Ablation of the span of the rows of ``basis`` ([k, d_model], any k >= 1; orthonormalised
    by the hooks) at the same sites as `Ablation`: x -> x - Q Qᵀ x."""

    basis: torch.Tensor

    def hooks(self, model: nn.Module):
        return subspace_ablation_hooks(model, self.basis)


@dataclass(frozen=True, eq=False)
class Addition:
    """Add ``vector`` ([d_model]) to residual[``layer``] at all positions."""

    vector: torch.Tensor
    layer: int

    def hooks(self, model: nn.Module):
        return residual_edit_hooks(model, self.layer, addition_edit(self.vector))


Intervention = Ablation | SubspaceAblation | Addition


def _factory(model: nn.Module, intervention: Intervention | None):
    if intervention is None:
        return None
    pre, post = intervention.hooks(model)
    return lambda idx, ids: (pre, post)


def intervened_logits(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    intervention: Intervention | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    resume: Resume | None = None,
) -> torch.Tensor:
    """Last-position next-token logits [n, vocab] (float32, CPU) under ``intervention``
    (``resume``: start from stored activations, see `stoplens.capture.extract.Resume`)."""
    return last_logits(
        model,
        seqs,
        pad_id=pad_id,
        batch_size=batch_size,
        hook_factory=_factory(model, intervention),
        resume=resume,
        progress=False,
    )


def stop_outcomes(logits: torch.Tensor, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(stops bool [n]: greedy first token is EOS, stop scores float64 [n]) from [n, vocab]."""
    stops = (logits.argmax(dim=-1) == eos_id).cpu().numpy()
    scores = stop_score(logits, eos_id).double().cpu().numpy()
    assert not np.isnan(scores).any(), "stop scores contain NaN"
    return stops, scores


@torch.no_grad()
def token_nll(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    starts: Sequence[int] | None = None,
    intervention: Intervention | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token NLL of tokens ``starts[i]..len-1`` of each sequence (default from 1)
    and their count: (nll float64 [n], count int [n]). Full forward (all positions' logits)."""
    starts = [1] * len(seqs) if starts is None else [max(1, int(s)) for s in starts]
    device = model_device(model)
    factory = _factory(model, intervention)

    def one_batch(idx: list[int]) -> torch.Tensor:
        ids, mask, pos = pad_batch([seqs[i] for i in idx], pad_id, device)
        pre, post = factory(idx, ids) if factory else ((), ())
        with add_hooks(pre, post):
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False
            ).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tgt = ids[:, 1:]
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [B, T-1], predicts token t+1
        out = torch.zeros(len(idx), 2, dtype=torch.float64)
        for b, i in enumerate(idx):
            s, n = starts[i], len(seqs[i])
            out[b, 0] = nll[b, s - 1 : n - 1].double().sum().cpu()
            out[b, 1] = max(0, n - s)
        return out

    res = run_batched(one_batch, [len(s) for s in seqs], batch_size, progress=False)
    return res[:, 0].numpy(), res[:, 1].numpy().astype(int)


@torch.no_grad()
def greedy_tokens(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    n_tokens: int,
    eos_id: int,
    intervention: Intervention | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
) -> list[list[int]]:
    """Up to ``n_tokens`` greedy reply tokens per prompt (stopping after EOS), batched, with
    ``intervention`` active on every step. Meant for a handful of report examples."""
    outs: list[list[int]] = [[] for _ in seqs]
    active = list(range(len(seqs)))
    for _ in range(n_tokens):
        if not active:
            break
        cur = [list(seqs[i]) + outs[i] for i in active]
        logits = intervened_logits(model, cur, intervention, pad_id=pad_id, batch_size=batch_size)
        nxt = logits.argmax(dim=-1).tolist()
        for i, t in zip(active, nxt, strict=True):
            outs[i].append(int(t))
        active = [i for i in active if outs[i][-1] != eos_id]
    return outs


def random_directions(d: int, n: int, seed: int) -> torch.Tensor:
    """``n`` random unit vectors in R^d, [n, d] float32, seeded (Gaussian, normalised).
    Drawn one row at a time, so the first k rows are the same for every n >= k: nulls of
    different sizes with one seed share their directions (and `OutcomeCache` entries)."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.stack([torch.randn(d, generator=g, dtype=torch.float64) for _ in range(n)])
    return (v / v.norm(dim=-1, keepdim=True)).float()


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def intervention_key(intervention: Intervention | None) -> tuple:
    """A hashable identity of an intervention: kind, layer and the exact float32 bytes of the
    vector (for an ablation, of the unit direction the hooks use). Vectors that differ in any
    bit are different interventions."""
    if intervention is None:
        return ("none",)
    if isinstance(intervention, Ablation):
        return ("ablation", _digest(_unit(intervention.direction)))
    if isinstance(intervention, SubspaceAblation):
        return ("subspace", tuple(intervention.basis.shape), _digest(intervention.basis))
    return ("addition", int(intervention.layer), _digest(intervention.vector))


class OutcomeCache:
    """Per-prompt stop outcomes (greedy first token is EOS; stop score) of one model under an
    intervention, computed once and looked up afterwards.

    The causal suite asks the same question many times: the unintervened TEST prompts and the
    random-direction ablations (seeded, so the same directions) recur in the main effects,
    in every held-out-placement split (whose prompts are subsets of TEST) and in the
    cross-model effects. Only the two numbers per (intervention, prompt) are kept, never the
    logits, so memory is O(prompts x interventions), independent of the vocabulary.

    An addition at residual[k] does not change blocks 0..k-1, and the suite adds many vectors
    (the direction at several α, its random nulls) at the same k to the same prompts. So for
    0 < k < L the clean prompts' residual[k] is kept (n x len x d, model dtype, on CPU; for
    the last layer asked for only, so a layer sweep does not accumulate them) and each
    addition runs only blocks k..L-1 from it.

    Scoped to one run (create it, pass it to the calls that may share work, drop it); there is
    no global cache. ``forwards`` / ``hits`` count computed and reused prompt evaluations."""

    def __init__(self, model: nn.Module, eos_id: int) -> None:
        self.model = model
        self.eos_id = int(eos_id)
        self._rows: dict[tuple[tuple, tuple[int, ...]], tuple[bool, float]] = {}
        self._resid: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self.forwards = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def stored_residuals(self) -> int:
        """Number of (layer, prompt) residuals kept for resumed additions."""
        return len(self._resid)

    def check(self, model: nn.Module, eos_id: int) -> None:
        """Raise unless this cache belongs to ``model`` and ``eos_id``."""
        if model is not self.model or int(eos_id) != self.eos_id:
            raise ValueError("OutcomeCache: built for another model or EOS id; use one per model")

    def store(
        self, seqs: Sequence[Sequence[int]], intervention: Intervention | None, logits: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Record the outcomes of already computed last-position ``logits`` [n, vocab] and
        return them as `stop_outcomes` does."""
        stops, scores = stop_outcomes(logits, self.eos_id)
        self.forwards += len(seqs)
        key = intervention_key(intervention)
        for s, st, sc in zip(seqs, stops, scores, strict=True):
            self._rows[(key, tuple(int(t) for t in s))] = (bool(st), float(sc))
        return stops, scores

    def outcomes(
        self,
        seqs: Sequence[Sequence[int]],
        intervention: Intervention | None,
        *,
        pad_id: int = 0,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(stops bool [n], stop scores float64 [n]) of ``seqs`` under ``intervention``;
        only the prompts not seen before under it are run (in one batched pass)."""
        key = intervention_key(intervention)
        tuples = [tuple(int(t) for t in s) for s in seqs]
        missing = list(dict.fromkeys(t for t in tuples if (key, t) not in self._rows))
        if missing:
            resume = None
            if isinstance(intervention, Addition):
                resume = self._resume(intervention.layer, missing, pad_id, batch_size)
            logits = intervened_logits(
                self.model, missing, intervention, pad_id=pad_id, batch_size=batch_size,
                resume=resume,
            )  # fmt: skip
            self.store(missing, intervention, logits)
        self.hits += len(tuples) - len(missing)
        rows = [self._rows[(key, t)] for t in tuples]
        stops = np.array([r[0] for r in rows], dtype=bool)
        scores = np.array([r[1] for r in rows], dtype=np.float64)
        return stops, scores

    def _resume(
        self, layer: int, seqs: list[tuple[int, ...]], pad_id: int, batch_size: int
    ) -> Resume | None:
        """Start at block ``layer`` from the kept residual[layer] of ``seqs`` (captured now
        where missing); None where there is nothing to skip (layer 0 or L)."""
        if not 0 < layer < arch.n_layers(self.model):
            return None
        if any(k[0] != layer for k in self._resid):  # one layer at a time bounds the memory
            self._resid = {k: v for k, v in self._resid.items() if k[0] == layer}
        need = [t for t in seqs if (layer, t) not in self._resid]
        if need:
            got = residual_sequences(
                self.model, need, [layer], pad_id=pad_id, batch_size=batch_size
            )[layer]
            self._resid.update({(layer, t): h for t, h in zip(need, got, strict=True)})
        return resume_from(layer, [self._resid[(layer, t)] for t in seqs])


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v.detach().float().cpu()
    n = v.norm()
    if not torch.isfinite(n) or n < 1e-12:
        raise ValueError("direction has zero (or non-finite) norm")
    return v / n


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
    r_hat = _unit(r)
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
        c_hat = _unit(c)
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
        kl = _mean_ci(kl_divergence(abl_c, base_c).numpy(), **boot)
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
        ablation_effect=_mean_ci(s_bt.astype(float) - s_at.astype(float), **boot),
        addition_effect=_mean_ci(s_ac.astype(float) - s_bc.astype(float), **boot),
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
            Addition(float(added.norm()) * _unit(own_direction), layer),
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


# --- nulls and JSON ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NullComparison:
    """An observed effect against a null distribution of the same effect (e.g. random
    directions). ``p_value`` = (1 + #{null >= observed}) / (1 + n_null) (one-sided, effect
    expected > null; ties count against the effect)."""

    observed: float
    null: tuple[float, ...]
    null_mean: float
    null_p5: float
    null_p95: float
    p_value: float

    @property
    def n_null(self) -> int:
        return len(self.null)

    @property
    def beyond_null(self) -> bool:
        """Observed effect above the null's 95th percentile."""
        return self.observed > self.null_p95

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["n_null"] = self.n_null
        d["beyond_null"] = self.beyond_null
        return d


def null_comparison(observed: float, null: Sequence[float]) -> NullComparison:
    """Compare ``observed`` with the ``null`` sample (see `NullComparison`)."""
    x = np.asarray(list(null), dtype=np.float64)
    if x.size == 0:
        raise ValueError("null_comparison: empty null")
    p = (1 + int((x >= observed).sum())) / (1 + x.size)
    p5, p95 = np.percentile(x, [5, 95])
    return NullComparison(
        observed=float(observed),
        null=tuple(float(v) for v in x),
        null_mean=float(x.mean()),
        null_p5=float(p5),
        null_p95=float(p95),
        p_value=float(p),
    )


def _mean_ci(x: np.ndarray, *, n_boot: int, seed: int) -> Estimate:
    """Mean over prompts of a 1-D array with its bootstrap 95% CI."""
    est = bootstrap_mean(np.asarray(x, dtype=np.float64).ravel(), n_boot=n_boot, seed=seed)
    assert isinstance(est, Estimate)
    return est


def dataclass_dict(obj: Any) -> dict[str, Any]:
    """JSON-ready dict of a result dataclass (`stoplens.analyses.stats.jsonable` per field),
    leaving out fields marked ``field(metadata=NO_JSON)`` (raw tensors kept for the caller)."""
    return {
        f.name: jsonable(getattr(obj, f.name)) for f in fields(obj) if f.metadata.get("json", True)
    }


NO_JSON = {"json": False}
"""``field(metadata=NO_JSON)``: a dataclass field `dataclass_dict` leaves out (raw tensors)."""
