"""Greedy generations under intervention on the planted model: the triggered prompt stops at
once, ablating the direction makes it reply, adding the direction makes a clean prompt stop;
the summaries count what the replies show."""

from __future__ import annotations

import pytest

from stoplens.analyses.generations import Condition, generate_conditions
from stoplens.capture.encode import encode_pairs
from stoplens.interventions.primitives import Ablation, Addition
from stoplens.models.planted import build_planted, planted_pair_records


def test_conditions_on_the_planted_model():
    pm = build_planted("qwen2", layer=1)
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(6, 2), pm.trigger_id)
    conds = {
        "triggered": Condition("triggered", None, "baseline"),
        "triggered+ablation": Condition("triggered", Ablation(pm.direction), "ablated"),
        "clean": Condition("clean", None, "baseline"),
        "clean+addition": Condition("clean", Addition(4.0 * pm.direction, 2), "added"),
    }
    gen = generate_conditions(pm.model, pairs, conds, eos_id=pm.eos_id,
                              pad_id=pm.tokenizer.pad_token_id, n_prompts=3, n_tokens=6,
                              tokenizer=pm.tokenizer, progress=False)  # fmt: skip
    s = {x.condition: x for x in gen.summary}
    assert s["triggered"].stopped == 1.0 and s["triggered"].mean_tokens == 1.0
    assert s["triggered+ablation"].stopped == 0.0 and s["triggered+ablation"].mean_tokens == 6
    assert s["clean"].stopped == 0.0 and s["clean+addition"].stopped == 1.0
    assert s["clean"].shared_prefix_with_clean is None
    assert s["triggered"].shared_prefix_with_clean == 0.0
    ex = gen.by_condition("triggered+ablation")
    assert len(ex) == 3 and all(e.text and len(e.tokens) == 6 for e in ex)
    assert gen.by_condition("triggered")[0].text == pm.tokenizer.decode([pm.eos_id])
    with pytest.raises(ValueError, match="prompts must be one of"):
        generate_conditions(pm.model, pairs, {"x": Condition("other", None, "")},
                            eos_id=pm.eos_id)  # fmt: skip
