"""The ranked component table: which heads and MLPs carry $STOP, judged against the
control-vs-control null.

A component is *beyond the null* in a mode when its exact effect is at least ``min_effect``
in size, its 95% CI excludes 0 and lies entirely outside the null's CI (see
`stoplens.analyses.components`).

Owns: `RankedComponent` and `rank_components`. Must not: patch anything, plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate
from stoplens.capture.sites import Component

if TYPE_CHECKING:  # types only
    from stoplens.analyses.component_effects import ComponentEffects
    from stoplens.analyses.components import ComponentConfig


@dataclass(frozen=True)
class RankedComponent:
    """One row of the ranked component table (effects in the ranking group).

    ``exact``: mode -> exact effect (None where not exactly patched); ``null``: the
    control-vs-control effect; ``attribution``: mode -> first-order estimate;
    ``beyond_null``: mode -> |exact effect| >= ``min_effect``, its CI excludes 0 and lies
    outside the null's CI (None without a null)."""

    rank: int
    name: str
    layer: int
    head: int | None
    exact: dict[str, Estimate | None]
    null: Estimate | None
    attribution: dict[str, float]
    attribution_rank: int
    beyond_null: dict[str, bool | None]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def _beyond(e: Estimate, null: Estimate | None, min_effect: float) -> bool | None:
    if null is None or not np.isfinite([e.value, e.lo, e.hi, null.lo, null.hi]).all():
        return None
    big = abs(e.value) >= min_effect
    return bool(big and ((e.lo > 0 and e.lo > null.hi) or (e.hi < 0 and e.hi < null.lo)))


def rank_components(
    comps: Sequence[Component],
    exact_set: Sequence[Component],
    attribution: dict[str, ComponentEffects],
    exact: dict[str, ComponentEffects],
    null: ComponentEffects | None,
    cfg: ComponentConfig,
) -> tuple[RankedComponent, ...]:
    """Every component, exactly patched ones first (by their largest |exact effect| over
    modes in the ranking group), then by |attribution|; each judged against the null."""
    g = cfg.rank_group
    modes = list(cfg.modes)
    gi = cfg.groups.index(g)
    stacked = np.stack([np.abs(attribution[m].mean[:, gi]) for m in modes])
    attr_score = np.nan_to_num(stacked, nan=-1.0).max(0)  # -1: no valid pair
    attr_rank = {comps[int(i)]: r + 1 for r, i in enumerate(np.argsort(-attr_score, kind="stable"))}
    in_exact = set(exact_set)

    def key(c: Component) -> tuple[int, float]:
        if c in in_exact:
            vals = [abs(exact[m].estimate(c.name, g).value) for m in modes]
            return (0, -float(np.nan_to_num(max(vals), nan=-1.0)))
        return (1, -float(attr_score[comps.index(c)]))

    rows = []
    for rank, c in enumerate(sorted(comps, key=key), start=1):
        ex = {m: exact[m].estimate(c.name, g) if c in in_exact else None for m in modes}
        nl = null.estimate(c.name, g) if null is not None and c in in_exact else None
        rows.append(
            RankedComponent(
                rank=rank,
                name=c.name,
                layer=c.layer,
                head=c.head,
                exact=ex,
                null=nl,
                attribution={m: float(attribution[m].mean[comps.index(c), gi]) for m in modes},
                attribution_rank=attr_rank[c],
                beyond_null={
                    m: None if e is None else _beyond(e, nl, cfg.min_effect) for m, e in ex.items()
                },
            )
        )
    return tuple(rows)
