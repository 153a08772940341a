"""Models dispatched by accelerate (what ``device_map`` loading does): weights offloaded to the
CPU or to disk sit on "meta" and every module runs through accelerate's hooks. Captures,
interventions and the resumed pass must give exactly what the plain model gives. On a GPU
machine the same dispatch spreads layers over devices; here the execution device is the CPU,
which checks that stoplens finds the execution device (not the weights' device) and that its
hooks compose with accelerate's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from accelerate import cpu_offload, dispatch_model

from stoplens.analyses.results import Nulls
from stoplens.analyses.steering import Examples, Steering, steering_effects
from stoplens.capture.encode import encode_pairs
from stoplens.capture.extract import capture_residuals, last_logits, unembed
from stoplens.errors import UnsupportedArchitectureError
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation
from stoplens.interventions.readout import Readout
from stoplens.models import arch
from stoplens.models.planted import build_planted, planted_pair_records

SEQS = [[5, 17, 42, 9, 33], [8, 3, 61, 25, 14, 90, 2], [11, 12, 13]]
POS = [[0, 4], [1, 6], [2, 2]]


@pytest.fixture(scope="module")
def planted():
    return build_planted("qwen2")


def _mixed(model, tmp_path):
    """Even blocks (and the embedding, head) on the CPU, odd blocks and the final norm on disk."""
    m = copy.deepcopy(model)
    dm = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "disk"}
    dm |= {f"model.layers.{i}": ("disk" if i % 2 else "cpu") for i in range(arch.n_layers(m))}
    dm["lm_head"] = "cpu"
    return dispatch_model(m, device_map=dm, offload_dir=str(tmp_path))


def _all_offloaded(model, tmp_path):
    return cpu_offload(copy.deepcopy(model), execution_device="cpu")


@pytest.mark.parametrize("dispatch", [_all_offloaded, _mixed])
def test_capture_and_interventions_match_the_plain_model(planted, dispatch, tmp_path):
    plain = planted.model
    model = dispatch(plain, tmp_path)
    blocks = arch.get_blocks(model)
    assert blocks[1].self_attn.q_proj.weight.device.type == "meta"  # really offloaded
    assert arch.input_device(model) == torch.device("cpu")
    torch.testing.assert_close(
        capture_residuals(model, SEQS, POS, progress=False),
        capture_residuals(plain, SEQS, POS, progress=False),
    )
    r = planted.direction
    abl = {
        id(m): last_logits(
            m, SEQS, hook_factory=lambda i, x, m=m: Ablation(r).hooks(m), progress=False
        )
        for m in (model, plain)
    }
    torch.testing.assert_close(abl[id(model)], abl[id(plain)])
    h = capture_residuals(plain, SEQS, POS, [arch.n_layers(plain)], progress=False)
    torch.testing.assert_close(unembed(model, h), unembed(plain, h))


def test_steering_effects_match_under_offloading(planted, tmp_path):
    """The whole intervention suite (ablation, addition resumed from the stored residual,
    random nulls) on a mixed CPU/disk dispatch equals the plain model's."""
    recs = planted_pair_records(12, 5)
    pairs = encode_pairs(planted.tokenizer, recs, planted.trigger_id)
    steer = Steering(4.0 * planted.direction, planted.residual_layer, 1.0)
    kw = dict(nulls=Nulls(16, n_boot=100), cost=False, examples=Examples(0))
    model = _mixed(planted.model, tmp_path)
    cache = OutcomeCache(model, planted.eos_id)
    pad = planted.tokenizer.pad_token_id
    got = steering_effects(Readout(model, planted.eos_id, pad), pairs, steer, cache=cache, **kw)
    ref = steering_effects(Readout(planted.model, planted.eos_id, pad), pairs, steer, **kw)
    assert got.ablation_effect.value == ref.ablation_effect.value == 1.0
    assert got.addition_effect.value == ref.addition_effect.value == 1.0
    assert got.ablation_null.null == ref.ablation_null.null
    assert got.addition_null.null == ref.addition_null.null
    assert np.isclose(
        got.mean_stop_score["clean_added"], ref.mean_stop_score["clean_added"], atol=1e-4
    )
    assert cache.stored_residuals == len(pairs)  # additions really ran from the stored residual


def test_execution_device_error_names_the_fix():
    lin = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(UnsupportedArchitectureError, match="device_map"):
        arch.execution_device(lin)
