"""Checks on the logit lens of Δ: EOS amplified before the output (at an intermediate
layer, beyond the fixed-token null), content suppressed where it rises, the mean Δ read as a
direction, and the last layer as a restatement of behaviour (described, not judged).

Owns: the mapping from a `LogitLensResult` to `Check`s. Must not: compute statistics beyond
reading values out of the result object, or write files.
"""

from __future__ import annotations

from stoplens.report.checks.meaning import CTRL, FIXED, MEANING
from stoplens.report.verdicts import Check, fmt

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
            ci_txt += f" (95% interval over resamples {lo_:g}–{hi_:g}"
            if t.eos_entry_share is not None:
                ci_txt += f"; EOS enters in {t.eos_entry_share:.0%} of them"
            ci_txt += ")"
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
            else f"; EOS enters in {t.eos_entry_share:.0%} of resamples"
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
