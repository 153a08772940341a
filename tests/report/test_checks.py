"""Each check passes and fails where it should, on hand-made result objects (no model)."""

from __future__ import annotations

import pytest

from stoplens.report.checks import build_verdicts
from stoplens.report.verdicts import VerdictThresholds

from . import factories as f

TH = VerdictThresholds()
NO_ABLATION = {"layer": True, "nonzero": True, "ablation": False, "addition": True, "kl": False}
NO_ADDITION = {"layer": True, "nonzero": True, "ablation": True, "addition": False, "kl": True}
GOOD_LENS = dict(eos_dlp=[0, 0, 5, 6, 7], rank=[9999, 500, 1, 1, 1], content=-3.0, first=2)
FIXED_LENS = dict(eos_dlp=[0, 0.1, 0.1, 0.2, 0.2], rank=[9999, 800, 900, 700, 600], content=0.0)


def _checks(**results):
    v = build_verdicts(results, TH)
    return v, {c.key: c for c in v.checks}


def test_one_direction_passes_only_when_dominant_and_beyond_the_fixed_token():
    fixed = f.spectrum(0.40, 0.5, 0.6, 0.8, 0.45)
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.95, 0.02, 0.98, 0.99, 0.9), fixed))
    assert c["one_direction"].passed is True
    assert c["one_direction"].null_name == "fixed-token null"
    assert c["one_direction"].figure == "pca_cumulative" and c["one_direction"].ref
    # any fixed-token swap shares a direction: a trigger no better than it fails
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.41, 0.02, 0.7, 0.9, 0.46), fixed))
    assert c["one_direction"].passed is False
    # two directions used on different prompts: top-1 ≈ 1/2 with σ₂²/σ₁² ≈ 1 fails
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.55, 0.9, 0.99, 0.99, 0.6), fixed))
    assert c["one_direction"].passed is False and "σ₂²/σ₁²" in c["one_direction"].note
    assert c["top3"].passed is True  # ... while three directions do hold the energy
    # too few pairs: not judged
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.95, 0.02, 0.98, 0.99, 0.9), fixed, n=32))
    assert c["one_direction"].passed is None and "too few" in c["one_direction"].note


def test_top_k_structure_and_diffuse():
    fixed = f.spectrum(0.40, 0.5, 0.6, 0.7, 0.45)
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.3, 0.8, 0.5, 0.75, 0.3), fixed))
    assert c["top3"].passed is False and c["top10"].passed is False
    assert c["structure"].passed is False  # loo cosine below the fixed token's
    _, c = _checks(lowrank=f.lowrank(f.spectrum(0.9, 0.05, 0.95, 0.99, 0.9), fixed))
    assert c["top3"].passed and c["top10"].passed and c["structure"].passed
    assert c["diffuse"].passed is False


def test_eos_lens_is_judged_at_an_intermediate_layer_against_the_fixed_token():
    ll = f.logit_lens(
        f.lens_side(**GOOD_LENS), f.lens_side(**FIXED_LENS), [9999, 50, 1, 1, 1], [9999] * 5
    )
    _, c = _checks(logit_lens=ll)
    assert c["eos_lens"].passed is True and c["content"].passed is True
    assert c["readout"].passed is True
    assert c["lens_last"].passed is None  # the last layer restates behaviour
    # EOS rises only at the output: no intermediate entry -> fails
    late = dict(GOOD_LENS, first=None)
    ll = f.logit_lens(f.lens_side(**late), f.lens_side(**FIXED_LENS), [9999] * 5, [9999] * 5)
    _, c = _checks(logit_lens=ll)
    assert c["eos_lens"].passed is False and "never enters" in c["eos_lens"].note
    assert c["readout"].passed is False
    # a fixed token that raises EOS as much: the trigger's CI is not above the null's
    same = dict(FIXED_LENS, eos_dlp=[0, 0, 5, 6, 7])
    ll = f.logit_lens(
        f.lens_side(**GOOD_LENS), f.lens_side(**same), [9999, 50, 1, 1, 1], [9999, 1, 1, 1, 1]
    )
    _, c = _checks(logit_lens=ll)
    assert c["eos_lens"].passed is False and c["readout"].passed is False
    # content not suppressed
    ll = f.logit_lens(
        f.lens_side(**dict(GOOD_LENS, content=0.0)), f.lens_side(**FIXED_LENS), [1] * 5, [9999] * 5
    )
    _, c = _checks(logit_lens=ll)
    assert c["content"].passed is False


def test_fine_tuning_created_it_needs_more_than_a_fixed_token_did():
    lr = f.lowrank(f.spectrum(0.9, 0.05, 0.95, 0.99, 0.9), None)
    _, c = _checks(lowrank=lr, diff_lens=f.diff_lens(20.0, 2.0, eos_did=8.0, eos_did_fixed=0.1))
    assert c["did"].passed is True and c["did"].null_name.startswith("fixed-token null")
    # every token's processing changed alike: the trigger's DiD is not above the fixed token's
    _, c = _checks(lowrank=lr, diff_lens=f.diff_lens(20.0, 19.95, eos_did=8.0, eos_did_fixed=0.1))
    assert c["did"].passed is False
    # a big DiD that does not raise EOS (e.g. a trained trigger row with no stop effect)
    _, c = _checks(lowrank=lr, diff_lens=f.diff_lens(20.0, 2.0, eos_did=0.0, eos_did_fixed=0.0))
    assert c["did"].passed is False
    # the untrained base as "fine-tune": DiD = 0
    _, c = _checks(lowrank=lr, diff_lens=f.diff_lens(0.0, 0.0, eos_did=0.0, eos_did_fixed=0.0))
    assert c["did"].passed is False


def test_behaviour_gate_and_specificity():
    _, c = _checks(specificity=f.specificity(96, 0, {"fixed": 0, "word": 0, "rare": 0}))
    assert c["behaviour"].passed is True and c["specific"].passed is True
    # an oddity detector: random vocabulary tokens stop it too
    _, c = _checks(specificity=f.specificity(96, 0, {"fixed": 0, "word": 3, "rare": 60}))
    assert c["specific"].passed is False and "worst: rare" in c["specific"].note
    # absence is judged on the upper bound: 2/96 false stops (upper ≈ 0.07) is not "none"
    _, c = _checks(specificity=f.specificity(96, 0, {"fixed": 2}))
    assert c["specific"].value < TH.max_other_stop and c["specific"].passed is False
    # a model that does not stop has nothing to explain
    v, c = _checks(specificity=f.specificity(10, 0, {"fixed": 0}))
    assert c["behaviour"].passed is False and v.overall == "no stop behaviour"


@pytest.mark.parametrize(
    "kw,key,expected",
    [
        ({}, "necessary", True),
        ({"necessary": 0.0}, "necessary", False),
        ({"kl": 4.6}, "necessary", False),  # wrecks the model: not evidence
        ({"kl": 4.6}, "cheap", False),
        ({"kl": 0.09}, "cheap", False),  # point under 0.1 but upper CI bound above it
        ({"kl": 0.05}, "cheap", True),
        ({"selection_passed": False}, "necessary", False),
        ({"selection_passed": False}, "sufficient", False),
        ({"sufficient": 0.2}, "sufficient", False),
        ({"general_sufficient": 0.1}, "general:sufficient", False),
        ({"split_selection_passed": False}, "general:necessary", False),
        # a layer that failed its ablation / KL filters on VAL: necessity fails, sufficiency
        # (whose addition filter passed) is still judged on its own numbers
        ({"selection_passed": False, "selection_filters": NO_ABLATION}, "necessary", False),
        ({"selection_passed": False, "selection_filters": NO_ABLATION}, "sufficient", True),
        ({"selection_passed": False, "selection_filters": NO_ADDITION}, "sufficient", False),
    ],
)
def test_causal_checks(kw, key, expected):
    _, c = _checks(causal=f.causal(**kw))
    assert c[key].passed is expected, c[key].note
    if (
        expected is False
        and key in ("necessary", "sufficient")
        and kw.get("selection_passed") is False
    ):
        assert "failed its validation" in c[key].note
    if key == "necessary" and kw.get("kl", 0) > 1:
        assert "not cheap" in c[key].note


def test_a_null_on_fewer_pairs_is_named_in_the_check():
    from dataclasses import replace

    res = f.causal()
    res.sufficient = replace(res.sufficient, null_prompts=48)  # measured on 96 pairs
    res.necessary = replace(res.necessary, null_prompts=96)
    _, c = _checks(causal=res)
    assert "random null on 48 of the 96 pairs" in c["sufficient"].note
    assert "random null on" not in c["necessary"].note


def test_base_model_control_is_information_not_a_failure():
    _, c = _checks(causal=f.causal(base_stop=1.0))
    assert c["base_control"].passed is None and c["base_control"].tier == "info"
    assert "existing EOS direction" in c["base_control"].meaning


def test_every_check_can_fail():
    """No verdict that no model can fail: every judged key above fails for some input."""
    fails: set[str] = set()
    fixed = f.spectrum(0.40, 0.5, 0.6, 0.8, 0.45)
    for results in (
        {"lowrank": f.lowrank(f.spectrum(0.3, 0.9, 0.5, 0.7, 0.3), fixed)},
        {
            "logit_lens": f.logit_lens(
                f.lens_side(**dict(GOOD_LENS, first=None, content=0.0)),
                f.lens_side(**FIXED_LENS),
                [9999] * 5,
                [9999] * 5,
            ),
            "lowrank": f.lowrank(f.spectrum(0.3, 0.9, 0.5, 0.7, 0.3), fixed),
        },
        {
            "diff_lens": f.diff_lens(1.0, 1.0, 0.0, 0.0),
            "lowrank": f.lowrank(f.spectrum(0.3, 0.9, 0.5, 0.7, 0.3), fixed),
        },
        {"specificity": f.specificity(0, 50, {"rare": 50})},
        {
            "causal": f.causal(
                necessary=0.0, sufficient=0.0, kl=5.0, general_necessary=0.0, general_sufficient=0.0
            )
        },
    ):
        v = build_verdicts(results, TH)
        fails |= {c.key for c in v.checks if c.passed is False}
    judged = {"one_direction", "top3", "top10", "structure", "eos_lens", "content", "readout", "did",
              "behaviour", "specific", "necessary", "sufficient", "general:necessary",
              "general:sufficient", "cheap"}  # fmt: skip
    assert judged <= fails, judged - fails
