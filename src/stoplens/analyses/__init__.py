"""Analyses: library functions that take captured activations (a `DeltaSet`) and return typed,
frozen result objects with ``to_dict()`` for results.json. They never plot or write files.

Modules (import them directly; this package imports nothing, so importing it is cheap):
    activations  capture the Δ sets (triggered / control / control2, ft and base) + cache
    stats        bootstrap CIs, Wilson intervals, z-scores/ranks, JSON conversion
    layerwise    1. layerwise Δ profile            (`layerwise_delta`)
    lowrank      2. low-rank structure of Δ        (`lowrank`)
    logit_lens   3. logit lens of Δ               (`logit_lens_delta`)
    diff_lens    4. base vs fine-tuned, DiD + ADL  (`diff_lens`)
    patching, directions, steering: the causal analyses.
    components, component_engines, subspace, generations, weights, component_suite: which
        heads and MLPs carry it, how many directions, replies under intervention, the
        fine-tune's weights (`component_suite.run_component_suite`).
"""
