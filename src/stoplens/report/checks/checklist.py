"""The checklist and headline from measured numbers: `build_verdicts` runs every builder
whose result is present and adds the "no clear pattern" line.

Owns: the order of the checklist and merging checks judged earlier in the same run
directory. Must not: judge a claim itself (the builders do), or write files.
"""

from __future__ import annotations

from typing import Any

from stoplens.report.checks.causal_claims import behaviour_check, causal_checks, specific_check
from stoplens.report.checks.component_lines import components_checks
from stoplens.report.checks.layer_choice import judged_layer
from stoplens.report.checks.lens_claims import lens_checks
from stoplens.report.checks.representation import (
    did_check,
    layerwise_checks,
    lowrank_checks,
)
from stoplens.report.verdicts import Check, Verdicts, VerdictThresholds


def build_verdicts(
    results: dict[str, Any], th: VerdictThresholds, previous: list[Check] | None = None
) -> Verdicts:
    """The checklist and headline from measured numbers. ``previous``: checks judged earlier in
    the same run directory (``analyze --only``) that this call does not recompute; they are
    kept (matched by key)."""
    checks: list[Check] = []
    layer = judged_layer(results)
    spec = results.get("specificity")
    if spec is not None:
        checks.append(behaviour_check(spec, th))
    lw, lr, ll, dl = (results.get(k) for k in ("layerwise", "lowrank", "logit_lens", "diff_lens"))
    if lw is not None:
        checks += layerwise_checks(lw, layer)
    if lr is not None and layer is not None:
        checks += lowrank_checks(lr, layer, th)
    if ll is not None:
        checks += lens_checks(ll, layer)
    if dl is not None and layer is not None:
        checks += did_check(dl, layer)
    causal = results.get("causal")
    if causal is not None:
        checks += causal_checks(causal)
    if results.get("components") is not None:
        checks += components_checks(results["components"])
    if spec is not None:
        checks.append(specific_check(spec, th))
    fresh = {c.key or c.claim for c in checks}
    checks += [
        c for c in previous or [] if (c.key or c.claim) not in fresh and c.key != "no_pattern"
    ]
    passed = [c for c in checks if c.tier in ("strong", "medium") and c.passed]
    judged = [c for c in checks if c.tier in ("strong", "medium") and c.passed is not None]
    if judged:
        checks.append(
            Check(
                "weak",
                "No clear pattern: no strong or medium check passed",
                not passed,
                f"{len(passed)} of {len(judged)} strong/medium checks passed",
                threshold="none passed",
                key="no_pattern",
            )
        )
    return Verdicts(checks, th)
