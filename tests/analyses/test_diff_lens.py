"""Analysis 4 (base vs fine-tuned) on planted models: the effect lives in the fine-tune."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.diff_lens import DiffLensConfig, diff_lens

pytestmark = pytest.mark.usefixtures("single_thread")


def _result(case):
    return case.result("diff_lens", lambda: diff_lens(case.pm.model, case.ds, case.pm.tokenizer))


def test_did_is_large_from_the_planted_layer_and_zero_before(case):
    r = _result(case)
    j = case.ds.layer_pos(case.answer)
    did = r.did.norm_mean_delta
    before = [i for i, layer in enumerate(r.layers) if layer < case.answer]
    after = [i for i, layer in enumerate(r.layers) if layer >= case.answer]
    assert did.lo[after].min() > 2.0
    assert did.value[before].max() < 0.05
    assert did.lo[j] > 20 * max(did.value[before].max(), 1e-9)
    # the DiD of the control-vs-control null is small everywhere
    assert r.did_null.norm_mean_delta.hi.max() < 0.1 * did.lo[j]


def test_base_has_no_trigger_effect(case):
    r = _result(case)
    j = case.ds.layer_pos(case.answer)
    assert r.base_delta.rel_norm.hi[j] < 0.1 * r.ft_delta.rel_norm.lo[j]
    assert r.base_trigger_added is True
    assert r.to_dict()["base_trigger_added"] is True


def test_adl_reads_the_planted_change_on_trigger_free_inputs(case):
    r = _result(case)
    j = case.ds.layer_pos(case.answer)
    for kind in ("last", "first"):
        a = r.adl[kind]
        before = [i for i, layer in enumerate(r.layers) if layer < case.answer]
        # fine-tuning changed the stream from the planted block on (it writes -beta*u when
        # no trigger is present), much more than the embedding surgery did before it
        assert a.norm_mean_diff.lo[j] > 5 * a.norm_mean_diff.value[before].max()
        # that change reads as "less EOS" (EOS is among the most suppressed tokens)
        assert a.eos_rank[j] == len(case.pm.tokenizer)
        assert a.bottom[j][0].token_id == case.pm.eos_id


def test_json_and_errors(qwen_case):
    r = _result(qwen_case)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d["adl"]) == {"first", "last", "post"}
    assert {"did", "did_null", "ft_delta", "base_delta", "cos_ft_base"} <= set(d)
    assert np.isfinite(r.cos_ft_base.value[1:]).all()
    no_base = qwen_case.ds.subset(range(8))
    from dataclasses import replace

    with pytest.raises(ValueError, match="base"):
        diff_lens(qwen_case.pm.model, replace(no_base, base_trig=None), qwen_case.pm.tokenizer)
    with pytest.raises(ValueError):
        diff_lens(
            qwen_case.pm.model,
            qwen_case.ds,
            qwen_case.pm.tokenizer,
            config=DiffLensConfig(kind="trigger"),
        )


def test_did_beyond_the_fixed_token_and_eos_did(case):
    """Fine-tuning (the planted surgery) created a trigger-specific change: the trigger's DiD
    exceeds a fixed ordinary token's, and the EOS log-prob DiD at the output is large for the
    trigger and ~0 for the fixed token."""
    from stoplens.analyses.diff_lens import diff_lens

    r = diff_lens(case.pm.model, case.ds, case.pm.tokenizer, base_model=case.pm.base)
    j = case.ds.layer_pos(case.answer)
    assert r.did_fixed is not None and r.eos_did is not None and r.eos_did_fixed is not None
    assert r.did.norm_mean_delta.lo[j] > 5 * r.did_fixed.norm_mean_delta.hi[j]
    assert r.eos_did.lo > 3.0
    assert abs(r.eos_did_fixed.value) < 0.5 * r.eos_did.value
    d = r.to_dict()
    assert {"did_fixed", "eos_did", "eos_did_fixed"} <= set(d)
