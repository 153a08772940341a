"""Information lines from the component suite: which heads and MLPs carry the signal, and
how many directions it takes. Descriptions, never judged.

Owns: the mapping from a `ComponentSuiteResult` to info `Check`s. Must not: judge, compute
statistics, or write files.
"""

from __future__ import annotations

from stoplens.report.verdicts import Check, fmt


def components_checks(suite) -> list[Check]:
    """Information lines from the component suite: which components carry the signal (exact
    patching beyond the control-vs-control null) and how many directions it takes (the
    smallest subspace whose ablation removes the stop cheaply). Descriptions, not judged."""
    out = [_carriers_check(suite)]
    sub = _subspace_check(suite)
    if sub is not None:
        out.append(sub)
    return out


def _carriers_check(suite) -> Check:
    """Which heads and MLPs carry it: exact patching beyond the control-vs-control null."""
    rank = suite.patching.ranking
    hits = [r for r in rank if any(v for v in r.beyond_null.values())]

    def label(r) -> str:
        parts = []
        for mode, e in r.exact.items():
            if e is not None:
                parts.append(f"{mode} {fmt(e.value)} [{fmt(e.lo)}, {fmt(e.hi)}]")
        return f"{r.name} ({'; '.join(parts)})"

    null = next((r.null for r in rank if r.null is not None), None)
    return Check(
        "info",
        "Which components carry it: heads and MLPs whose exact patching effect is beyond the null",
        None,
        ", ".join(label(r) for r in hits[:6]) if hits else "none",
        n=suite.patching.n_valid,
        null=None if null is None else float(null.hi),
        threshold="reported, not judged",
        note=f"{len(hits)} of {len(rank)} ranked components beyond the null (effect in units "
        "of the whole stop: 1 = carries / needs all of it)",
        null_name="control-vs-control null (upper CI bound)",
        meaning="Names the heads that move the trigger's information to the decision "
        "position and the MLPs that write the stop; see the components section.",
        figure="components",
        ref="/components/patching/ranking",
        key="components",
    )


def _subspace_check(suite) -> Check | None:
    """How many directions it takes: the smallest subspace whose ablation removes the stop."""
    sub = suite.subspace
    if sub is None:
        return None
    k = sub.smallest_k
    kmax = sub.config.k_max
    per = []
    for name, fam in sub.families.items():
        last = fam.steps[-1] if fam.steps else None
        if last is not None:
            per.append(
                f"{name}: k={last.k} leaves stop rate {fmt(last.ablated_stop_rate.value)}, "
                f"KL {fmt(last.kl.value)}"
            )
    return Check(
        "info",
        "How many directions: the smallest k whose subspace ablation removes the stop "
        "(≥ 0.9 of the stops, beyond random k-subspaces, cheap)",
        None,
        f"k = {k}" if k is not None else f"none up to k = {kmax}",
        threshold="reported, not judged",
        note="; ".join(per),
        null_name="random k-dimensional subspaces",
        meaning="k = 1 agrees with a single necessary direction; k > 1 says how many "
        "directions the signal needs; none means the stop survives every small subspace "
        "ablation that leaves the model intact.",
        figure="components",
        ref="/components/subspace",
        key="subspace",
    )
