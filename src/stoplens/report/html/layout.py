"""What ``report.html`` lays out where: figure titles, the per-analysis sections (figures, the
null in words, the per-layer columns as JSON pointers into results.json), the causal evidence
rows, the results keys that have a section of their own, and the fallback links of checks
written before each check carried its own ``figure`` and ``ref``.

Owns: these tables (data only). Must not: render (`stoplens.report.html.render` and the
section modules) or judge.
"""

from __future__ import annotations

EVAL_FIGURE = "eval_stop_scores.png"  # = stoplens.evaluate.FIGURE (not imported: that pulls torch)

FIGURE_TITLES = {
    "layerwise": "Layerwise Δ norm",
    "pca_cumulative": "Low rank: cumulative energy / variance",
    "pca_components": "Low rank: component distributions",
    "logit_lens": "Logit lens of Δ",
    "diff_lens": "Base vs fine-tuned (DiD and activation difference lens)",
    "patching": "Activation patching",
    "steering": "Directional ablation and addition",
    "checkpoints": "Checkpoint dynamics",
    "cross_regime": "Knowledge-trained vs behavior-trained",
}

# Used only for checks written before each check carried its own ``figure`` and ``ref``:
# (claim prefix, figure key, JSON pointer of its numbers).
FALLBACK_LINKS = (
    ("Early spike", "layerwise", "/layerwise/summary/last"),
    ("Mid-layer peak", "layerwise", "/layerwise/summary/last"),
    ("Late spike", "layerwise", "/layerwise/summary/last"),
    ("One direction", "pca_cumulative", "/lowrank/trigger/energy_top1_ci"),
    ("(centred PCA", "pca_components", "/lowrank/trigger/pc1_ci"),
    ("Top-", "pca_cumulative", "/lowrank/trigger"),
    ("Some structure", "pca_cumulative", "/lowrank/trigger/loo_cos"),
    ("Diffuse", "pca_cumulative", "/lowrank/trigger/n_components_for_threshold"),
    ("EOS amplified", "logit_lens", "/logit_lens/trigger/eos_dlogprob"),
    ("Content suppressed", "logit_lens", "/logit_lens/trigger/content_dlogprob"),
    ("Fine-tuning created", "diff_lens", "/diff_lens/did/norm_mean_delta"),
    ("Necessary", "steering", "/causal/necessary"),
    ("Sufficient", "steering", "/causal/sufficient"),
    ("General (necessary)", "steering", "/causal/general_necessary"),
    ("General (sufficient)", "steering", "/causal/general_sufficient"),
    ("Specific", "steering", "/causal/specific"),
    ("Cheap", "steering", "/causal/cost"),
)

# (results key, section title, figure keys, what the null is, layers pointer, per-layer
# columns (label, pointer); a pointer to an estimate shows value [CI]).
ANALYSES: tuple[tuple[str, str, tuple[str, ...], str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "layerwise",
        "1. Where: layerwise Δ",
        ("layerwise",),
        "control-vs-control pairs (two ordinary controls swapped: the noise floor) and, where "
        "captured, a fixed ordinary token in the trigger's place (more than token identity); the "
        "base model's Δ beside them",
        "/layerwise/layers",
        (
            ("‖Δ‖/‖h‖ (triggered)", "/layerwise/profiles/last/trigger/rel_norm"),
            ("‖Δ‖/‖h‖ (null)", "/layerwise/profiles/last/null/rel_norm"),
            ("‖Δ‖/‖h‖ (fixed token)", "/layerwise/profiles/last/fixed/rel_norm"),
            ("‖mean Δ‖ (triggered)", "/layerwise/profiles/last/trigger/norm_mean_delta"),
            ("‖mean Δ‖ (null)", "/layerwise/profiles/last/null/norm_mean_delta"),
            ("‖Δ‖/‖h‖ (base, triggered)", "/layerwise/profiles/last/base_trigger/rel_norm"),
        ),
    ),
    (
        "lowrank",
        "2. One direction? Low rank of the Δs",
        ("pca_cumulative", "pca_components"),
        "the same statistics on control-vs-control Δs and, where captured, on fixed-token Δs "
        "(a fixed token swapped against varying controls shares a direction too: the null for "
        "'one direction')",
        "/lowrank/layers",
        (
            ("top-1 energy (triggered)", "/lowrank/trigger/energy_top1_ci"),
            ("top-1 energy (null)", "/lowrank/null/energy_top1_ci"),
            ("top-1 energy (fixed token)", "/lowrank/fixed/energy_top1_ci"),
            ("LOO cos to mean Δ (triggered)", "/lowrank/trigger/loo_cos"),
            ("LOO cos (null)", "/lowrank/null/loo_cos"),
            ("LOO cos (fixed token)", "/lowrank/fixed/loo_cos"),
            ("centred PC1 (triggered)", "/lowrank/trigger/pc1_ci"),
            ("centred PC1 (null)", "/lowrank/null/pc1_ci"),
            ("components for 80%", "/lowrank/trigger/n_components_for_threshold"),
        ),
    ),
    (
        "logit_lens",
        "3. Output: logit lens of Δ",
        ("logit_lens",),
        "control-vs-control and, where captured, fixed-token Δs through the same lens (the last "
        "layer equals the model's own logits: judge the intermediate layers)",
        "/logit_lens/layers",
        (
            ("EOS Δ log-prob (triggered)", "/logit_lens/trigger/eos_dlogprob"),
            ("EOS Δ log-prob (null)", "/logit_lens/null/eos_dlogprob"),
            ("EOS Δ log-prob (fixed token)", "/logit_lens/fixed/eos_dlogprob"),
            ("EOS rank", "/logit_lens/trigger/eos_rank"),
            ("EOS z", "/logit_lens/trigger/eos_z"),
            ("content Δ log-prob (triggered)", "/logit_lens/trigger/content_dlogprob"),
            ("content Δ log-prob (null)", "/logit_lens/null/content_dlogprob"),
        ),
    ),
    (
        "diff_lens",
        "4. Did fine-tuning create it? Base vs fine-tuned",
        ("diff_lens",),
        "difference-in-differences of control-vs-control pairs and, where captured, of the "
        "fixed token",
        "/diff_lens/layers",
        (
            ("‖mean DiD‖", "/diff_lens/did/norm_mean_delta"),
            ("‖mean DiD‖ (null)", "/diff_lens/did_null/norm_mean_delta"),
            ("‖mean DiD‖ (fixed token)", "/diff_lens/did_fixed/norm_mean_delta"),
            ("mean ‖Δ‖ fine-tuned", "/diff_lens/ft_delta/mean_norm_delta"),
            ("mean ‖Δ‖ base", "/diff_lens/base_delta/mean_norm_delta"),
            ("cos(Δ ft, Δ base)", "/diff_lens/cos_ft_base"),
        ),
    ),
)

# Top-level keys of results.json that have a section of their own; any other key is shown
# generically under "Other results" (a new analysis is never silently left out).
LAID_OUT = frozenset(
    {"meta", "eval", "pairs", "layerwise", "lowrank", "logit_lens", "diff_lens", "causal",
     "causal_knowledge", "cross_regime", "checkpoints", "figures", "verdicts", "components",
     "pair_table", "null_test_pairs", "specificity"}
)  # fmt: skip

EVIDENCE = (
    ("necessary", "Necessary (ablation)"),
    ("sufficient", "Sufficient (addition)"),
    ("general_necessary", "General, necessary (held-out placements)"),
    ("general_sufficient", "General, sufficient (held-out placements)"),
    ("specific", "Specific (base model)"),
    ("base_control", "Specific (base model)"),  # the name newer causal results use
    ("cost", "Cheap (KL on clean prompts)"),
)
