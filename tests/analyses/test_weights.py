"""Weight-space view: on the planted models the only writer aligned with u is the planted
head's output projection (full-weight difference against the base), the trigger row's change
carries the key direction a, not u; a LoRA update is read exactly as the merged difference."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from stoplens.analyses.weights import weight_view
from stoplens.errors import StoplensError
from stoplens.models.planted import build_planted


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_planted_head_writes_the_direction(family):
    pm = build_planted(family, layer=1)
    v = weight_view(pm.model, pm.direction, base=pm.base, trigger_id=pm.trigger_id,
                    subspace=pm.direction[None])  # fmt: skip
    assert v.source == "difference"
    best = v.best("write")
    assert best is not None and best.layer == 1 and best.module.endswith(("o_proj", "c_proj"))
    assert best.cos_top[0] > 0.99 > v.null_cos_p95 and best.share_along > 0.9
    others = [u for u in v.updates if u.role == "write" and u is not best]
    assert all(u.cos_top[0] < v.null_cos_p95 for u in others)
    assert v.embedding is not None and abs(v.embedding.cos_direction) < v.null_cos_p95
    e = v.embedding
    assert e.norm > 0.9  # the trigger row was given a (unit) component along a
    json.dumps(v.to_dict(), allow_nan=False)


def test_lora_update_matches_the_merged_difference():
    from peft import LoraConfig, get_peft_model

    pm = build_planted("qwen2", layer=1)
    torch.manual_seed(0)
    lora = get_peft_model(
        copy.deepcopy(pm.base),
        LoraConfig(r=2, target_modules=["o_proj", "k_proj"], init_lora_weights=False),
    )
    v_lora = weight_view(lora, pm.direction)
    merged = copy.deepcopy(lora).merge_and_unload()
    v_diff = weight_view(merged, pm.direction, base=pm.base)
    assert v_lora.source == "lora" and v_diff.source == "difference"
    key = lambda u: (u.layer, u.module)  # noqa: E731
    a = {key(u): u for u in v_lora.updates}
    b = {key(u): u for u in v_diff.updates}
    assert set(a) == set(b) and {u.role for u in a.values()} == {"read", "write"}
    for k in a:
        assert a[k].singular == pytest.approx(b[k].singular, rel=1e-4, abs=1e-6)
        assert a[k].share_along == pytest.approx(b[k].share_along, rel=1e-3, abs=1e-6)


def test_needs_an_adapter_or_a_base():
    pm = build_planted("qwen2", layer=1)
    with pytest.raises(StoplensError, match="pass the base model"):
        weight_view(pm.model, pm.direction)
