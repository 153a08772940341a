"""Checks on the representation: the four analyses (layerwise Δ, low rank, logit lens,
base vs fine-tuned), each read against its null (see `stoplens.report.verdicts` for the
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


# --- analysis 3: logit lens -----------------------------------------------------------------


def lens_checks(ll, fallback_layer: int | None) -> list[Check]:
    t, f = ll.trigger, ll.fixed
    null, name = (f, FIXED) if f is not None else (ll.null, CTRL)
    inter = ll.intermediate
    out = [_eos_lens_check(ll, null, name)]
    first = t.eos_first_layer
    at = first if first is not None else fallback_layer
    if at is not None and at in ll.layers and (not inter or ll.at(at) in inter):
        out.append(_content_check(ll, at, null, name))
    if ll.fixed_readout_eos_rank is not None and inter:
        out.append(_readout_check(ll))
    out.append(_lens_last_check(ll, null, name))
    return out


def _eos_entry(ll, null):
    """(passed, value, CI, n, null value, note) of the EOS-entry check: at the first entry
    layer when EOS enters, else at the intermediate layer of its largest Δ log-prob."""
    t = ll.trigger
    inter = ll.intermediate
    cfg = ll.config
    first = t.eos_first_layer
    if first is not None:
        j = ll.at(first)
        v, nv = t.eos_dlogprob[j], null.eos_dlogprob[j]
        ok = bool(v.lo > nv.hi)
        ci_txt = f"first entry layer {first}"
        if t.eos_first_layer_ci is not None:
            lo_, hi_ = t.eos_first_layer_ci
            ci_txt += f" (95% interval over resamples {lo_:g}–{hi_:g}; enters in {fmt(t.eos_entry_share)} of them)"
        note = (
            f"{ci_txt}; EOS rank {int(t.eos_rank[j])} of {ll.vocab_size}, z = {fmt(float(t.eos_z[j]))}; "
            f"single-swap 95th percentile {fmt(float(ll.null.eos_dlogprob_p95[j]))}"
            if ll.null.eos_dlogprob_p95 is not None
            else ci_txt
        )
        value, ci, n, nval = v.value, (v.lo, v.hi), v.n, nv.value
    else:
        ok = False
        js = inter or [len(ll.layers) - 1]
        jbest = max(js, key=lambda j: t.eos_dlogprob.value[j])
        v = t.eos_dlogprob[jbest]
        value, ci, n, nval = v.value, (v.lo, v.hi), v.n, null.eos_dlogprob.value[jbest]
        share = (
            ""
            if t.eos_entry_share is None
            else f"; enters in {fmt(t.eos_entry_share)} of resamples"
        )
        note = (
            f"EOS never enters the top {cfg.entry_k} of the Δ-lens at residuals 1..L−1 with ≥ "
            f"{cfg.entry_min_dlogprob} nats beyond both nulls; largest EOS Δ log-prob there at "
            f"residual {ll.layers[jbest]}{share}"
        )
    return ok, value, ci, n, nval, note


def _eos_lens_check(ll, null, name: str) -> Check:
    """EOS amplified before the output: the logit lens of Δ at an intermediate layer."""
    cfg = ll.config
    ok, value, ci, n, nval, note = _eos_entry(ll, null)
    return Check(
        "strong",
        "EOS amplified before the output: logit lens of Δ (through the final norm) at an "
        "intermediate layer",
        ok,
        value,
        ci,
        n,
        nval,
        f"EOS enters (top {cfg.entry_k}, ≥ {cfg.entry_min_dlogprob} nats, beyond the single-swap "
        "95th percentile) and CI above the null's CI",
        note,
        null_name=name,
        meaning=MEANING["eos_lens"],
        figure="logit_lens",
        ref="/logit_lens/trigger/eos_dlogprob",
        key="eos_lens",
    )


def _content_check(ll, at: int, null, name: str) -> Check:
    """Content suppressed where EOS rises: the control run's top tokens lose probability."""
    t = ll.trigger
    cfg = ll.config
    j = ll.at(at)
    c, cn = t.content_dlogprob[j], null.content_dlogprob[j]
    return Check(
        "strong",
        f"Content suppressed at residual {at}: the control run's top tokens lose probability",
        bool(c.hi < 0 and c.hi < cn.lo),
        c.value,
        (c.lo, c.hi),
        c.n,
        cn.value,
        "CI below 0 and below the null's CI",
        f"mean Δ log-prob of the control run's top {cfg.content_k} next tokens",
        null_name=name,
        meaning=MEANING["content"],
        figure="logit_lens",
        ref="/logit_lens/trigger/content_dlogprob",
        key="content",
    )


def _readout_check(ll) -> Check:
    """The mean Δ read as a direction promotes EOS at an intermediate layer."""
    t = ll.trigger
    inter = ll.intermediate
    cfg = ll.config
    hits = [
        j
        for j in inter
        if ll.readout_eos_rank[j] <= cfg.entry_k and ll.fixed_readout_eos_rank[j] > cfg.entry_k
    ]
    j = hits[0] if hits else min(inter, key=lambda q: ll.readout_eos_rank[q])
    return Check(
        "medium",
        "Direction readout: the mean Δ read as a direction promotes EOS at an intermediate layer",
        bool(hits),
        float(ll.readout_eos_rank[j]),
        None,
        t.n,
        float(ll.fixed_readout_eos_rank[j]),
        f"EOS rank ≤ {cfg.entry_k} (the fixed token's readout: > {cfg.entry_k})",
        f"at residual {ll.layers[j]}: EOS rank {int(ll.readout_eos_rank[j])}, "
        f"z = {fmt(float(ll.readout_eos_z[j]))}",
        null_name="fixed-token readout rank",
        meaning=MEANING["readout"],
        figure="logit_lens",
        ref="/logit_lens/readout_eos_rank",
        key="readout",
    )


def _lens_last_check(ll, null, name: str) -> Check:
    """Behaviour through the lens at the last layer (reported, not judged)."""
    t = ll.trigger
    jL = len(ll.layers) - 1
    v = t.eos_dlogprob[jL]
    return Check(
        "describe",
        f"Behaviour through the lens: EOS Δ log-prob at the last layer (residual {ll.layers[jL]})",
        None,
        v.value,
        (v.lo, v.hi),
        v.n,
        null.eos_dlogprob.value[jL],
        "reported, not judged",
        f"EOS rank {int(t.eos_rank[jL])}; content Δ log-prob {fmt(t.content_dlogprob.value[jL])}",
        null_name=name,
        meaning=MEANING["lens_last"],
        figure="logit_lens",
        ref="/logit_lens/trigger/eos_dlogprob",
        key="lens_last",
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
