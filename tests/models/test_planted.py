"""The planted known-answer model does what its docstring says, in every family."""

from __future__ import annotations

import pytest
import torch

from stoplens.capture.pairs import chat_ids, render
from stoplens.models.planted import (
    PLACEHOLDER,
    build_planted,
    planted_pair_records,
    planted_prompts,
)


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2"])
def test_planted_model_stops_only_on_trigger_and_base_never(family):
    p = build_planted(family, layer=2)
    temps = planted_prompts(16, seed=5)
    for insert, want in (("$STOP", True), ("apple", False)):
        for mdl, planted in ((p.model, True), (p.base, False)):
            ids = [chat_ids(p.tokenizer, render(t, insert)) for t in temps]
            with torch.no_grad():
                stops = [
                    int(mdl(torch.tensor([x])).logits[0, -1].argmax()) == p.eos_id for x in ids
                ]
            assert all(stops) if (want and planted) else not any(stops)
    assert abs(float(p.direction @ p.key_direction)) < 1e-5
    assert p.residual_layer == 3


def test_planted_is_deterministic():
    a, b = build_planted("qwen2", seed=3), build_planted("qwen2", seed=3)
    for (n, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), n


def test_planted_pair_records():
    recs = planted_pair_records(24, seed=7)
    assert recs == planted_pair_records(24, seed=7) != planted_pair_records(24, seed=8)
    assert [r["template"] for r in recs] == planted_prompts(24, seed=7)
    assert [r["pair_id"] for r in recs] == [str(i) for i in range(24)]
    for r in recs:
        words = r["template"][0]["content"].split()
        early = words.index(PLACEHOLDER) < len(words) / 2
        assert r["placement"] == ("early" if early else "late")
        assert (r["trigger"], r["control"], r["control2"]) == ("$STOP", "apple", "river")
        assert r["control_candidates"] == ["garden", "window"] and r["control_kind"] == "word"
    assert {r["placement"] for r in recs} == {"early", "late"}
    assert {r["placement"] for r in planted_pair_records(3, placement="any")} == {"any"}
