"""The direction artifact: save / load round trip with its provenance, and the documented
API (the README example) applied to the planted model: ablating the saved direction removes
stopping, adding it induces stopping, a subspace entry ablates, another model is refused."""

from __future__ import annotations

import pytest
import torch

from stoplens.capture.encode import encode_pairs
from stoplens.errors import StoplensError
from stoplens.interventions import (
    DirectionEntry,
    artifact_from,
    load_directions,
    save_directions,
)
from stoplens.interventions.readout import intervened_logits, stop_outcomes
from stoplens.models.planted import build_planted, planted_pair_records


@pytest.fixture(scope="module")
def planted():
    pm = build_planted("qwen2", layer=1)
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(16, 4), pm.trigger_id)
    return pm, pairs


def _artifact(pm):
    r = 4.0 * pm.direction
    return artifact_from(
        pm.model,
        {
            "direction": DirectionEntry(
                "direction", "direction", r[None], layer=2, alpha=1.0, selected_on="val"
            ),
            "subspace": DirectionEntry(
                "subspace",
                "subspace",
                torch.stack([pm.direction]),
                selected_on="test",
                info={"family": "train_delta"},
            ),
        },
        trigger="$STOP",
        name="planted qwen2",
    )


def stops(pm, seqs) -> float:
    logits = intervened_logits(pm.model, seqs, None, pad_id=pm.tokenizer.pad_token_id)
    return float(stop_outcomes(logits, pm.eos_id)[0].mean())


def test_round_trip(planted, tmp_path):
    pm, _ = planted
    path = save_directions(tmp_path / "artifacts" / "directions.safetensors", _artifact(pm))
    art = load_directions(path)
    e = art["direction"]
    assert (e.kind, e.layer, e.alpha, e.fitted_on, e.selected_on, e.k) == (
        "direction", 2, 1.0, "train", "val", 1,
    )  # fmt: skip
    torch.testing.assert_close(e.vectors[0], 4.0 * pm.direction)
    assert art["subspace"].info == {"family": "train_delta"} and art["subspace"].layer is None
    assert art.trigger == "$STOP" and art.model["model_type"] == "qwen2"
    assert art.model["d_model"] == 64 and art.model["n_layers"] == 4
    assert art.to_dict()["entries"]["direction"]["norm"] == pytest.approx(4.0, rel=1e-5)
    with pytest.raises(StoplensError, match="no entry"):
        art["nope"]


def test_readme_example_on_the_planted_model(planted, tmp_path):
    """The README's usage, step by step."""
    pm, pairs = planted
    path = save_directions(tmp_path / "directions.safetensors", _artifact(pm))
    model = pm.model

    art = load_directions(path)
    assert stops(pm, pairs.trig_ids) == 1.0 and stops(pm, pairs.ctrl_ids) == 0.0
    with art.ablate(model):  # the direction, projected out everywhere
        assert stops(pm, pairs.trig_ids) == 0.0
    with art.add(model, alpha=2.0):  # 2 r added at residual[layer]
        assert stops(pm, pairs.ctrl_ids) == 1.0
    with art.ablate(model, "subspace"):
        assert stops(pm, pairs.trig_ids) == 0.0
    assert stops(pm, pairs.trig_ids) == 1.0  # every hook removed again


def test_refuses_another_model_and_bad_entries(planted, tmp_path):
    pm, _ = planted
    art = _artifact(pm)
    other = build_planted("qwen2", layer=1, n_layers=5).model
    with (
        pytest.raises(StoplensError, match="apply them to the model they came from"),
        art.ablate(other),
    ):
        pass
    with pytest.raises(StoplensError, match="only a direction can be added"):
        art["subspace"].addition()
    with pytest.raises(StoplensError, match=r"\[1, d\]"):
        DirectionEntry("x", "direction", torch.zeros(2, 8))
    with pytest.raises(StoplensError, match="does not exist"):
        load_directions(tmp_path / "missing.safetensors")
