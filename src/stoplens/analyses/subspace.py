"""Subspaces, when one direction is not enough: the smallest k whose ablation removes stopping.

Two families of nested subspaces S_1 ⊂ S_2 ⊂ ... ⊂ S_kmax (fitted on the TRAIN pairs, judged
on the TEST pairs):

* ``train_delta``: the top-k right singular vectors of the n×d matrix of TRAIN Δs
  (h_trig - h_ctrl at the decision position of residual[``layer``]; uncentred SVD, so the
  first vector is the shared direction);
* ``component_writes``: the span of the mean Δ *writes* of the top components (in their
  ranking order) in blocks before ``layer`` (those whose output reaches residual[``layer``];
  a readout after it, e.g. the MLP that writes the EOS direction, would be trivially
  necessary, as the last layers the causal selection leaves out): for a head, its output
  projection applied to its own slice alone (bias removed), for an MLP its output, at the
  decision position. Writes that add (almost) nothing new to the span are skipped, so S_k is
  always k-dimensional. An MLP's write is read after its post-norm where the family has one;
  a head's is taken before the attention post-norm (which is not per head).

For each k the span is ablated (x -> x - Q Qᵀ x at every block input, attention output and
MLP output, all positions: `stoplens.interventions.primitives.SubspaceAblation`) on the triggered TEST
prompts. The effect is the drop in stop rate (greedy first token = EOS) with a bootstrap 95% CI,
against ``n_random`` random k-dimensional subspaces (the null; empirical one-sided p). The cost
is the mean KL(ablated || original) of the next-token distribution on the clean TEST prompts,
beside the mean KL of the first ``n_random_kl`` random subspaces. k *removes stopping* (is
necessary) when the drop is at least ``min_removed`` (0.9) of the baseline stop rate, its CI
lies above the null's 95th percentile and p <= ``p_threshold``. The null runs on at most
``null_prompts`` TEST pairs, stratified by placement, and ranks the span's drop on the same
pairs. A direction that removes the stop on only the prompts one of two heads serves, as in
the planted "two_heads" model, does not remove stopping. k is *cheap* when the KL is at most
``max_kl``. The smallest k that is both is reported (None if no k up to ``k_max`` is); the
sweep stops there. The random null of a k runs only when that k can still be the answer (it
removes ``min_removed`` of the stops and is cheap) or is the family's first k that removes
them (``full_null`` runs it at every k); any other k that removes the stops reads "not
judged" for necessity. On SmolLM2-135M-Instruct every k up to 4 removed every stop at a KL
of 0.5-4.5 nats, and the 160 random subspaces of those nulls were 17 of the sweep's 19
minutes (before they ran on a subset of the pairs: 48, now 32).

Owns: fitting the two families and the sweep. Must not: plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.results import (
    NO_JSON,
    NullComparison,
    dataclass_dict,
    null_comparison,
    null_prompts,
)
from stoplens.analyses.stats import Estimate, bootstrap_mean, wilson
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import capture_residuals, kl_divergence
from stoplens.capture.sites import Component, capture_sites
from stoplens.interventions.primitives import SubspaceAblation
from stoplens.interventions.readout import intervened_logits, stop_outcomes
from stoplens.models import arch
from stoplens.progress import bar

FAMILIES = ("train_delta", "component_writes")


@dataclass(frozen=True)
class SubspaceConfig:
    """Settings and thresholds of `smallest_subspace` (written into the results)."""

    k_max: int = 4
    n_random: int = 20
    n_random_kl: int = 8  # random subspaces whose KL gives the cost's reference (mean)
    position: str = "last"
    min_removed: float = 0.9  # share of the baseline stops the ablation must remove
    p_threshold: float = 0.05
    max_kl: float = 0.1
    batch_size: int = 32
    n_boot: int = 1000
    seed: int = 0
    full_null: bool = False  # run the random null at every k, not only where k can qualify
    null_prompts: int | None = 32  # TEST pairs each random subspace runs on (None: all)

    def __post_init__(self) -> None:
        if self.k_max < 1:
            raise ValueError("k_max must be >= 1")
        if self.null_prompts is not None and self.null_prompts < 8:
            raise ValueError(f"null_prompts must be >= 8 or None (got {self.null_prompts})")
        if self.n_random < 16 or 1 / (self.n_random + 1) > self.p_threshold:
            raise ValueError(
                f"n_random={self.n_random}: needs >= 16 random subspaces and an attainable "
                f"p <= {self.p_threshold} (1/(n_random+1))"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class SubspaceStep:
    """Ablation of one k-dimensional span on the TEST pairs (see module docstring). ``null``,
    ``kl_null_mean``: None when the random null was not run (the span cannot be the answer:
    it does not remove the stops, or it is not cheap); ``necessary``: None when it removes
    the stops but was not compared with the null (not judged), False when it does not."""

    k: int
    ablated_stop_rate: Estimate
    effect: Estimate
    null: NullComparison | None
    kl: Estimate
    kl_null_mean: float | None
    necessary: bool | None
    cheap: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class SubspaceFamily:
    """One nested family: ``basis`` [k_fitted, d] orthonormal rows (row i added at k = i+1),
    ``sources`` what each row came from, ``energy`` the share of the Δ (or write) energy each
    row carries, ``steps`` the sweep up to the smallest k (or k_max)."""

    name: str
    layer: int | None
    sources: tuple[str, ...]
    energy: tuple[float, ...]
    steps: tuple[SubspaceStep, ...]
    smallest_k: int | None
    basis: torch.Tensor = field(metadata=NO_JSON)

    def step(self, k: int) -> SubspaceStep | None:
        return next((s for s in self.steps if s.k == k), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class SubspaceResult:
    """The families' sweeps on the TEST pairs, with the unintervened rates (Wilson CIs)."""

    config: SubspaceConfig
    n_train: int
    n_test: int
    baseline_stop_rate: Estimate
    baseline_false_stop_rate: Estimate
    families: dict[str, SubspaceFamily]

    @property
    def smallest_k(self) -> int | None:
        """Smallest k over the families (None if none removes stopping cheaply)."""
        ks = [f.smallest_k for f in self.families.values() if f.smallest_k is not None]
        return min(ks) if ks else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["smallest_k"] = self.smallest_k
        return d


# --- fitting -------------------------------------------------------------------------------------


@torch.no_grad()
def train_delta_basis(
    model: nn.Module,
    pairs: EncodedPairs,
    layer: int,
    k: int,
    *,
    position: str = "last",
    pad_id: int = 0,
    batch_size: int = 32,
) -> tuple[torch.Tensor, np.ndarray]:
    """Top-k right singular vectors of the TRAIN Δ matrix at residual[``layer``]:
    (basis [k', d] float32 with k' = min(k, rank), energy share of each [k'])."""
    pos = pairs.decision_positions(position)
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size, progress=False)
    ht = capture_residuals(model, pairs.trig_ids, pos, [layer], **kw)[:, 0]
    hc = capture_residuals(model, pairs.ctrl_ids, pos, [layer], **kw)[:, 0]
    delta = (ht.double() - hc.double()).reshape(-1, ht.shape[-1])  # [n * P, d]
    _, s, vt = torch.linalg.svd(delta, full_matrices=False)
    energy = (s**2 / (s**2).sum().clamp_min(1e-30)).numpy()
    keep = int(min(k, int((s > s[0] * 1e-6).sum()) if s.numel() else 0))
    return vt[:keep].float(), energy[:keep]


@torch.no_grad()
def component_writes(
    model: nn.Module,
    pairs: EncodedPairs,
    components: Sequence[Component],
    *,
    position: str = "last",
    pad_id: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Mean Δ write (triggered - control) of each component at the decision position(s) into
    the residual stream, [n_components, d] float32 (see module docstring)."""
    if not components:
        return torch.zeros(0, arch.d_model(model))
    pos = pairs.decision_positions(position)
    sites = sorted({c.site for c in components})
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size)
    at = capture_sites(model, pairs.trig_ids, pos, sites, **kw)
    ac = capture_sites(model, pairs.ctrl_ids, pos, sites, **kw)
    out = []
    for c in components:
        mean = (at[c.site].double() - ac[c.site].double()).mean(dim=(0, 1)).float()  # [width]
        if c.head is None:
            out.append(mean)
            continue
        proj = arch.get_attn_out_proj(model, c.layer)
        w = arch.linear_weight(proj)
        hd = arch.head_dim(model)
        z = torch.zeros(2, w.shape[1], dtype=w.dtype, device=w.device)
        z[0, c.head * hd : (c.head + 1) * hd] = mean[c.head * hd : (c.head + 1) * hd].to(w.dtype)
        y = proj(z).float().cpu()  # the module itself: a peft adapter or Conv1D included
        out.append(y[0] - y[1])  # remove the bias
    return torch.stack(out)


def independent_span(
    vectors: torch.Tensor, names: Sequence[str], k: int, tol: float = 1e-3
) -> tuple[torch.Tensor, tuple[str, ...], np.ndarray]:
    """Gram-Schmidt over ``vectors`` [m, d] in order, skipping any whose part outside the span
    so far is below ``tol`` of its norm, until k rows: (orthonormal basis [k', d], the names of
    the rows used, the share of the total squared norm each contributes)."""
    basis: list[torch.Tensor] = []
    used: list[str] = []
    gains: list[float] = []
    total = float((vectors.double() ** 2).sum()) or 1.0
    for v, name in zip(vectors.double(), names, strict=True):
        if len(basis) >= k:
            break
        r = v.clone()
        for b in basis:
            r -= (r @ b) * b
        if float(r.norm()) <= tol * max(float(v.norm()), 1e-30):
            continue
        basis.append(r / r.norm())
        used.append(name)
        gains.append(float(r.norm() ** 2) / total)
    d = vectors.shape[-1]
    stacked = torch.stack(basis).float() if basis else torch.zeros(0, d)
    return stacked, tuple(used), np.asarray(gains)


def random_subspace(d: int, k: int, seed: int) -> torch.Tensor:
    """A random k-dimensional subspace of R^d as orthonormal rows [k, d] (seeded)."""
    g = torch.Generator().manual_seed(int(seed))
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q.t().float()


# --- the sweep -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Base:
    """The unintervened TEST outcomes a sweep compares with: triggered stops [n], clean
    logits [n, vocab], and the pairs the random nulls run on (``idx`` into TEST, ``pairs``)."""

    stops: np.ndarray
    logits_clean: torch.Tensor
    idx: np.ndarray
    pairs: EncodedPairs


def _random_null(model, k, d, base: _Base, cfg, eos_id, kw) -> tuple[list[float], list[float]]:
    """Drops in stop rate and mean KLs of ``cfg.n_random`` random k-dim subspaces (seeded by
    k, so every family at the same k shares them) on the null's pairs."""
    s_base, logits_clean = base.stops[base.idx], base.logits_clean[base.idx]
    null, null_kl = [], []
    for j in range(cfg.n_random):
        rnd = SubspaceAblation(random_subspace(d, k, cfg.seed * 1000 + 97 * k + j))
        rs, _ = stop_outcomes(intervened_logits(model, base.pairs.trig_ids, rnd, **kw), eos_id)
        null.append(float(s_base.mean() - rs.mean()))
        if j < cfg.n_random_kl:
            clean = intervened_logits(model, base.pairs.ctrl_ids, rnd, **kw)
            null_kl.append(float(kl_divergence(clean, logits_clean).mean()))
    return null, null_kl


def removes_stops(drop: float, baseline_rate: float, min_removed: float) -> bool:
    """A span's drop in stop rate reaches ``min_removed`` of the baseline stop rate (and is
    positive): it removes the stops, whatever it costs and whatever the null says."""
    return bool(drop >= min_removed * baseline_rate and drop > 0)


def _removes(effect: Estimate, s_base, cfg) -> bool:
    return removes_stops(effect.value, float(s_base.mean()), cfg.min_removed)


def _judge(effect: Estimate, kl: Estimate, s_base, null, observed: float, n_null: int, cfg):
    """(null comparison or None, necessary or None, cheap): necessity needs the drop to reach
    ``min_removed`` of the baseline and to beat the null (ranked by ``observed``, the drop on
    the null's ``n_null`` pairs); None when the null was not run."""
    cheap = bool(kl.value <= cfg.max_kl)
    removes = _removes(effect, s_base, cfg)
    if null is None:
        return None, (None if removes else False), cheap
    cmp = null_comparison(observed, null, n_null)
    return cmp, bool(removes and effect.lo > cmp.null_p95 and cmp.p_value <= cfg.p_threshold), cheap


def _step(model, k, ab, d, nulls, test, base: _Base, cfg, eos_id, kw, first) -> SubspaceStep:
    """Ablate one span; run (or reuse) the random null of its k only when the k removes the
    stops and either is cheap (it can still answer the sweep's question) or is the family's
    first k that removes them (``first``: the smallest span that removes the stops at any
    cost is always judged), or with ``full_null``. Every random subspace is a full pass over
    the null's prompts, and on a deep model the nulls of spans that could not qualify were
    most of the sweep's time."""
    s_base, logits_clean = base.stops, base.logits_clean
    stops, _ = stop_outcomes(intervened_logits(model, test.trig_ids, ab, **kw), eos_id)
    drop = s_base.astype(float) - stops.astype(float)
    kl = kl_divergence(intervened_logits(model, test.ctrl_ids, ab, **kw), logits_clean)
    effect = bootstrap_mean(drop, n_boot=cfg.n_boot, seed=cfg.seed)
    kl_est = bootstrap_mean(kl.numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
    assert isinstance(effect, Estimate) and isinstance(kl_est, Estimate)
    cheap = bool(kl_est.value <= cfg.max_kl)
    wanted = cfg.full_null or (_removes(effect, s_base, cfg) and (cheap or first))
    if wanted and k not in nulls:
        nulls[k] = _random_null(model, k, d, base, cfg, eos_id, kw)
    null, null_kl = nulls.get(k, (None, None))
    observed = float(drop[base.idx].mean())
    cmp, necessary, cheap = _judge(effect, kl_est, s_base, null, observed, len(base.idx), cfg)
    return SubspaceStep(
        k=k,
        ablated_stop_rate=wilson(int(stops.sum()), len(test)),
        effect=effect,
        null=cmp,
        kl=kl_est,
        kl_null_mean=float(np.mean(null_kl)) if null_kl else None,
        necessary=necessary,
        cheap=cheap,
    )


def _sweep(
    model, name, layer, basis, sources, energy, nulls, test, base, cfg, eos_id, pad_id, progress
) -> SubspaceFamily:
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=cfg.batch_size)
    d = basis.shape[-1] if basis.numel() else arch.d_model(model)
    steps: list[SubspaceStep] = []
    smallest = None
    removed = False  # some smaller k of this family already removes the stops
    with bar(basis.shape[0], f"subspace: {name}", enabled=progress, unit="k") as b:
        for k in range(1, basis.shape[0] + 1):
            ab = SubspaceAblation(basis[:k])
            step = _step(model, k, ab, d, nulls, test, base, cfg, eos_id, kw, not removed)
            removed = removed or _removes(step.effect, base.stops, cfg)
            steps.append(step)
            b.update(1)
            if step.necessary and step.cheap:
                smallest = k
                break
    return SubspaceFamily(
        name=name,
        layer=layer,
        sources=tuple(sources),
        energy=tuple(float(e) for e in energy),
        steps=tuple(steps),
        smallest_k=smallest,
        basis=basis,
    )


@torch.no_grad()
def smallest_subspace(
    model: nn.Module,
    train: EncodedPairs,
    test: EncodedPairs,
    *,
    layer: int,
    eos_id: int,
    pad_id: int = 0,
    components: Sequence[Component] = (),
    config: SubspaceConfig | None = None,
    progress: bool = True,
) -> SubspaceResult:
    """Sweep both families (``component_writes`` only when ``components`` in blocks before
    ``layer`` are given, in ranking order) and report the smallest k whose ablation removes
    stopping cheaply."""
    cfg = config or SubspaceConfig()
    if len(train) == 0 or len(test) == 0:
        raise ValueError("smallest_subspace: needs TRAIN and TEST pairs")
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=cfg.batch_size)
    s_base, _ = stop_outcomes(intervened_logits(model, test.trig_ids, None, **kw), eos_id)
    logits_clean = intervened_logits(model, test.ctrl_ids, None, **kw)
    s_clean, _ = stop_outcomes(logits_clean, eos_id)
    idx = null_prompts(test.placements(), cfg.null_prompts, cfg.seed)
    sub = test if len(idx) == len(test) else test.subset([int(i) for i in idx])
    base = _Base(s_base, logits_clean, idx, sub)
    nulls: dict[int, tuple[list[float], list[float]]] = {}  # k -> random-subspace null
    common = (nulls, test, base, cfg, eos_id, pad_id, progress)
    fams: dict[str, SubspaceFamily] = {}
    basis, energy = train_delta_basis(model, train, layer, cfg.k_max, position=cfg.position, **kw)
    srcs = [f"Δ singular vector {i + 1} (residual {layer})" for i in range(basis.shape[0])]
    fams["train_delta"] = _sweep(model, "train_delta", layer, basis, srcs, energy, *common)
    before = [c for c in components if c.layer < layer]
    if before:
        writes = component_writes(model, train, before, position=cfg.position, **kw)
        wb, used, gains = independent_span(writes, [c.name for c in before], cfg.k_max)
        fams["component_writes"] = _sweep(model, "component_writes", None, wb, used, gains, *common)
    n = len(test)
    return SubspaceResult(
        config=cfg,
        n_train=len(train),
        n_test=n,
        baseline_stop_rate=wilson(int(s_base.sum()), n),
        baseline_false_stop_rate=wilson(int(s_clean.sum()), n),
        families=fams,
    )
