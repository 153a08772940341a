"""Which number judges which claim: the checklist built from the analysis result objects.

Each builder reads one analysis result and returns `Check`s (see `stoplens.report.verdicts`
for the rules: the right null for each question, absence claims on the upper CI bound, the
logit lens at intermediate layers, shape as description). `build_verdicts` assembles them.

Modules, by topic: `meaning` (what each check means), `layer_choice` (the judged layer),
`representation` (layerwise, low rank, DiD), `lens_claims` (the logit lens),
`causal_claims` (behaviour, specificity, the causal suite), `component_lines`
(component-suite information lines), `checklist` (assembly).

Owns: the mapping from measured numbers to checks. Must not: compute statistics beyond
reading values out of result objects, or write files. This module only re-exports.
"""

from stoplens.report.checks.causal_claims import behaviour_check, causal_checks, specific_check
from stoplens.report.checks.checklist import build_verdicts
from stoplens.report.checks.component_lines import components_checks
from stoplens.report.checks.layer_choice import judged_layer, judged_layer_from_doc
from stoplens.report.checks.lens_claims import lens_checks
from stoplens.report.checks.meaning import CTRL, FIXED, MEANING
from stoplens.report.checks.representation import (
    did_check,
    layerwise_checks,
    lowrank_checks,
)

__all__ = [
    "CTRL",
    "FIXED",
    "MEANING",
    "behaviour_check",
    "build_verdicts",
    "causal_checks",
    "components_checks",
    "did_check",
    "judged_layer",
    "judged_layer_from_doc",
    "layerwise_checks",
    "lens_checks",
    "lowrank_checks",
    "specific_check",
]
