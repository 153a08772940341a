"""Checks on the representation: layerwise Δ, low rank and base vs fine-tuned (the logit
lens is `lens_claims`), each read against its null (see `stoplens.report.verdicts` for the
rules: the right null for each question, absence claims on the upper CI bound, the logit lens
at intermediate layers, shape as description).

Owns: the mapping from these analyses' numbers to `Check`s. Must not: compute statistics
beyond reading values out of result objects, or write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stoplens.report.checks.meaning import CTRL, FIXED, MEANING
from stoplens.report.verdicts import Check, VerdictThresholds, fmt

# --- analysis 1: layerwise ------------------------------------------------------------------


def layerwise_checks(lw, layer: int | None) -> list[Check]:
    s = lw.summary["last"]
    out = []
    stab = (
        "" if s.shape_stability is None else f"; same shape in {s.shape_stability:.0%} of resamples"
    )
    out.append(
        Check(
            "describe",
            "Where: layerwise profile shape (description, not evidence)",
            None,
            s.shape,
            n=lw.n,
            note=f"largest rise of the excess at residual {s.largest_increase_layer}, peak at "
            f"{s.peak_layer_rel} of {lw.n_layers} (excess ‖Δ‖/‖h‖ {fmt(s.peak_excess_rel)}){stab}; "
            "bands: early < 1/3 ≤ mid < 2/3 ≤ late",
            null_name=s.basis,
            meaning=MEANING["shape"],
            figure="layerwise",
            ref="/layerwise/summary/last",
            key="shape",
        )
    )
    if layer is not None and s.excess_rel is not None and layer in lw.layers:
        j = lw.layers.index(layer)
        ex = s.excess_rel[j]
        prof = lw.profiles["last"]
        ref = prof.get("fixed", prof["null"])
        out.append(
            Check(
                "medium",
                f"A signal beyond token identity at the decision position (residual {layer})",
                bool(ex.lo > 0),
                ex.value,
                (ex.lo, ex.hi),
                ex.n,
                float(ref.rel_norm.value[j]),
                "CI of the excess ‖Δ‖/‖h‖ above 0",
                f"trigger ‖Δ‖/‖h‖ {fmt(prof['trigger'].rel_norm.value[j])} minus the null's",
                null_name=s.basis,
                meaning=MEANING["signal"],
                figure="layerwise",
                ref="/layerwise/summary/last/excess_rel",
                key="signal",
            )
        )
    return out


# --- analysis 2: low rank -------------------------------------------------------------------


@dataclass(frozen=True)
class _LowrankAt:
    """What every low-rank check at the judged layer reads: the result, the layer and its
    index, the null it is judged against (and its name), and whether n is too small."""

    lr: Any
    layer: int
    i: int
    null: Any
    name: str
    small: bool
    why: str


def lowrank_checks(lr, layer: int, th: VerdictThresholds) -> list[Check]:
    if layer not in lr.layers:
        return []
    i = lr.layers.index(layer)
    small = lr.n_too_small or lr.n < th.min_pairs
    why = f"n = {lr.n} < {th.min_pairs} pairs: too few for a low-rank claim" if small else ""
    null, name = (lr.fixed, FIXED) if lr.fixed is not None else (lr.null, CTRL)
    at = _LowrankAt(lr, layer, i, null, name, small, why)
    return [
        _one_direction_check(at, th),
        _pc1_check(at),
        *_topk_checks(at, th),
        _structure_check(at),
        _diffuse_check(at, th),
    ]


def _one_direction_check(at: _LowrankAt, th: VerdictThresholds) -> Check:
    """One direction: the uncentred top-1 Δ energy share, dominant and above the null."""
    lr, layer, i, null, name, small, why = at.lr, at.layer, at.i, at.null, at.name, at.small, at.why
    t = lr.trigger
    e1 = t.energy_top1[i]
    n1 = null.energy_top1[i]
    ratio = t.second_ratio[i] if t.second_ratio is not None else None
    ok = None
    if not small:
        ok = bool(
            e1.lo > th.pc1_strong
            and e1.lo > n1.hi
            and (ratio is None or ratio.hi <= th.second_max_ratio)
        )
    rtxt = "" if ratio is None else f"; σ₂²/σ₁² {fmt(ratio.value)} (CI ≤ {fmt(ratio.hi)})"
    return Check(
        "strong",
        f"One direction: top-1 Δ energy share > {th.pc1_strong:.0%} at residual {layer}, "
        "dominant and above the fixed-token null",
        ok,
        e1.value,
        (e1.lo, e1.hi),
        e1.n,
        n1.value,
        f"CI > {th.pc1_strong}, CI above the null's CI ({fmt(n1.hi)}), σ₂²/σ₁² CI ≤ "
        f"{th.second_max_ratio}",
        (why or "uncentred SVD of the n×d Δ matrix (a shared direction)") + rtxt,
        null_name=name,
        meaning=MEANING["one_direction"],
        figure="pca_cumulative",
        ref="/lowrank/trigger/energy_top1_ci",
        key="one_direction",
    )


def _pc1_check(at: _LowrankAt) -> Check:
    """The centred PCA PC1 share, reported for comparison (not judged)."""
    lr, i, null, name = at.lr, at.i, at.null, at.name
    t = lr.trigger
    pc1 = t.pc1[i]
    return Check(
        "describe",
        "(centred PCA, for comparison) PC1 share",
        None,
        pc1.value,
        (pc1.lo, pc1.hi),
        pc1.n,
        float(null.pc1.value[i]),
        "reported, not judged",
        "centred PCA measures the structure of the variation around the mean Δ, not whether "
        "Δ shares one direction",
        null_name=name,
        figure="pca_components",
        ref="/lowrank/trigger/pc1_ci",
        key="pc1",
    )


def _topk_checks(at: _LowrankAt, th: VerdictThresholds) -> list[Check]:
    """Top-3 (strong) and top-10 (medium) Δ energy shares above the threshold and the null."""
    lr, i, null, name, small, why = at.lr, at.i, at.null, at.name, at.small, at.why
    t = lr.trigger
    out = []
    for k, tier, thr, key in (
        (3, "strong", th.top3_strong, "top3"),
        (10, "medium", th.top10_medium, "top10"),
    ):
        if t.energy_ci is None or k not in t.energy_ci:
            continue
        share = t.energy_ci[k][i]
        nshare = (null.energy_ci or {}).get(k)
        nhi = float(nshare.hi[i]) if nshare is not None else float("nan")
        out.append(
            Check(
                tier,
                f"Top-{k} Δ energy share > {thr:.0%}",
                None if small else bool(share.lo > thr and share.lo > nhi),
                share.value,
                (share.lo, share.hi),
                share.n,
                None if nshare is None else float(nshare.value[i]),
                f"CI > {thr} and above the null's CI",
                why,
                null_name=name,
                meaning=MEANING[key],
                figure="pca_cumulative",
                ref=f"/lowrank/trigger/energy_top{k}_ci",
                key=key,
            )
        )
    return out


def _structure_check(at: _LowrankAt) -> Check:
    """Some structure: the leave-one-out cosine of each Δ to the mean Δ above the null."""
    lr, i, null, name, small, why = at.lr, at.i, at.null, at.name, at.small, at.why
    t = lr.trigger
    loo, nloo = t.loo_cos[i], null.loo_cos[i]
    return Check(
        "medium",
        "Some structure: leave-one-out cosine of Δ to the mean Δ above the null",
        None if small else bool(loo.lo > nloo.hi),
        loo.value,
        (loo.lo, loo.hi),
        loo.n,
        nloo.value,
        "CI above the null's CI",
        why or f"control-vs-control null: {fmt(lr.null.loo_cos[i].value)}",
        null_name=name,
        meaning=MEANING["structure"],
        figure="pca_components",
        ref="/lowrank/trigger/loo_cos",
        key="structure",
    )


def _diffuse_check(at: _LowrankAt, th: VerdictThresholds) -> Check:
    """Diffuse (weak): many centred components for 80% of the variance."""
    lr, i, null, name, small, why = at.lr, at.i, at.null, at.name, at.small, at.why
    t = lr.trigger
    ncomp = int(t.n_components[i])
    return Check(
        "weak",
        f"Diffuse: more than {th.n80_weak} centred components for 80% of the variance",
        None if small else bool(ncomp > th.n80_weak),
        float(ncomp),
        None,
        lr.n,
        float(null.n_components[i]),
        f"> {th.n80_weak}",
        why,
        null_name=name,
        meaning=MEANING["diffuse"],
        figure="pca_cumulative",
        ref="/lowrank/trigger/n_components_for_threshold",
        key="diffuse",
    )


# --- analysis 4: base vs fine-tuned ---------------------------------------------------------


def did_check(dl, layer: int) -> list[Check]:
    if layer not in dl.layers:
        return []
    i = dl.layers.index(layer)
    d = dl.did.norm_mean_delta[i]
    ref, name = (dl.did_fixed, FIXED) if dl.did_fixed is not None else (dl.did_null, CTRL)
    dn = ref.norm_mean_delta[i]
    ok = bool(d.lo > dn.hi)
    parts = [f"fine-tuned mean ‖Δ‖ {fmt(dl.ft_delta.mean_norm_delta.value[i])} vs base "
             f"{fmt(dl.base_delta.mean_norm_delta.value[i])}"]  # fmt: skip
    thr = "‖mean DiD‖ CI above the null's CI"
    if dl.eos_did is not None:
        e, ef = dl.eos_did, dl.eos_did_fixed
        eos_ok = bool(e.lo > 0 and (ef is None or e.lo > ef.hi))
        ok = ok and eos_ok
        parts.append(
            f"EOS log-prob DiD at the output {fmt(e.value)} (CI {fmt(e.lo)}–{fmt(e.hi)})"
            + ("" if ef is None else f" vs the fixed token's {fmt(ef.value)} (CI ≤ {fmt(ef.hi)})")
        )
        thr += "; EOS log-prob DiD CI above 0 and above the fixed token's"
    if dl.base_trigger_added:
        parts.append("the base lacked the trigger: it was added with a mean-initialised row")
    return [
        Check(
            "strong",
            f"Fine-tuning created it: the trigger's difference-in-differences at residual {layer} "
            "beyond the fixed token's",
            ok,
            d.value,
            (d.lo, d.hi),
            d.n,
            dn.value,
            thr,
            "; ".join(parts),
            null_name=name + " (its DiD)",
            meaning=MEANING["did"],
            figure="diff_lens",
            ref="/diff_lens/did/norm_mean_delta",
            key="did",
        )
    ]
