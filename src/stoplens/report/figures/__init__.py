"""Figures made from analysis result objects only; no science is computed here.

Each function takes a typed result and a path, draws one figure (labelled axes, 95% CIs as
bands or error bars, nulls drawn), writes it atomically as PNG and returns the path.
`make_figures` draws every figure a run's results allow, under the file names of `FIGURES`.

Modules: `style` (colours, CI bands, the PNG write), `delta_figures` (the four analyses),
`causal_figures` (the causal suite), `component_figures` (the component suite).

Owns: the figures and their file names. Must not: compute science, or decide where the
report folder is (`RunDir` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoplens.report.checks import judged_layer
from stoplens.report.figures import component_figures
from stoplens.report.figures.causal_figures import (
    checkpoint_figure,
    cross_regime_figure,
    patching_figure,
    steering_figure,
)
from stoplens.report.figures.component_figures import components_figure
from stoplens.report.figures.delta_figures import (
    diff_lens_figure,
    layerwise_figure,
    logit_lens_figure,
    lowrank_figure,
    pca_components_figure,
)
from stoplens.rundir import RunDir

FIGURES = {
    "layerwise": "1_layerwise_delta_norm.png",
    "pca_cumulative": "2_pca_cumulative_variance.png",
    "pca_components": "2_pca_component_distributions.png",
    "logit_lens": "3_logit_lens_delta.png",
    "diff_lens": "4_base_vs_finetuned_adl.png",
    "patching": "5_activation_patching.png",
    "steering": "6_direction_ablation_addition.png",
    "checkpoints": "7_checkpoint_dynamics.png",
    "cross_regime": "8_cross_regime.png",
    "components": component_figures.FIGURE,
}


def make_figures(run: RunDir, results: dict[str, Any]) -> dict[str, str]:
    """Draw every figure the results allow; returns {figure key: file name}."""
    made: dict[str, str] = {}
    layer = judged_layer(results)

    def out(key: str) -> Path:
        made[key] = FIGURES[key]
        return run.figure(FIGURES[key])

    if results.get("layerwise") is not None:
        layerwise_figure(results["layerwise"], out("layerwise"))
    lr = results.get("lowrank")
    if lr is not None and layer is not None and layer in lr.layers:
        lowrank_figure(lr, layer, out("pca_cumulative"))
        pca_components_figure(lr, layer, out("pca_components"))
    if results.get("logit_lens") is not None:
        logit_lens_figure(results["logit_lens"], out("logit_lens"))
    if results.get("diff_lens") is not None:
        diff_lens_figure(results["diff_lens"], out("diff_lens"))
    causal = results.get("causal")
    if causal is not None:
        patching_figure(causal.patching, out("patching"), causal.patching_noising)
        steering_figure(causal, out("steering"))
    if results.get("checkpoints") is not None:
        checkpoint_figure(results["checkpoints"], out("checkpoints"))
    if results.get("cross_regime") is not None:
        cross_regime_figure(results["cross_regime"], out("cross_regime"))
    if results.get("components") is not None:
        components_figure(results["components"], out("components"))
    return made


__all__ = [
    "FIGURES",
    "checkpoint_figure",
    "components_figure",
    "cross_regime_figure",
    "diff_lens_figure",
    "layerwise_figure",
    "logit_lens_figure",
    "lowrank_figure",
    "make_figures",
    "patching_figure",
    "pca_components_figure",
    "steering_figure",
]
