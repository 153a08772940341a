"""Two checks that unit norm weights would hide, run on every family with randomised norms
(non-unit weights, non-zero biases; see `family_model_random_norms`):

* the logit lens of residual[L] (`stoplens.capture.extract.unembed`) is the model's own
  last-position logits; a lens that applies the final norm twice, or skips it, fails this;
* directional ablation leaves no component along the direction in the residual stream, at
  every residual index, including post-norm families (Gemma 2/3, OLMo 2) whose attention and
  MLP outputs pass through a norm before the residual add; the edit made before that norm
  (the hooks before `arch.get_attn_out` / `get_mlp_out` existed) fails this.
"""

from __future__ import annotations

import pytest
import torch

from stoplens.capture import extract
from stoplens.capture.extract import capture_residuals
from stoplens.capture.hooks import (
    ablation_edit,
    add_hooks,
    directional_ablation_hooks,
    edit_output,
    input_hidden,
    output_hidden,
)
from stoplens.models import arch

SEQS = [[5, 17, 42, 9, 33, 7, 60, 12], [8, 3, 61, 25, 14, 90, 2, 77]]
ALL_POS = [list(range(8))] * 2
TOL = 1e-4


def _lens_error(model) -> float:
    """max |unembed(residual[L]) - logits| at the last position, over SEQS; ``unembed`` is
    looked up on the module at call time, so a monkeypatched one is what is checked."""
    L = arch.n_layers(model)
    last = [[len(s) - 1] for s in SEQS]
    resid = capture_residuals(model, SEQS, last, [L], progress=False)[:, 0, 0]
    lens = extract.unembed(model, resid).cpu()
    with torch.no_grad():
        real = model(torch.tensor(SEQS, device=extract.model_device(model))).logits[:, -1]
    return float((lens - real.float().cpu()).abs().max().detach())


def _norm_twice(model, resid):
    norm = arch.get_final_norm(model)
    return _good_unembed(model, norm(resid.to(norm.weight.dtype)))


def _norm_skipped(model, resid):
    logits = arch.get_unembed(model)(resid.to(arch.get_unembed(model).weight.dtype)).float()
    cap = arch.logit_softcap(model)
    return torch.tanh(logits / cap) * cap if cap else logits


_good_unembed = extract.unembed


def test_lens_of_last_residual_is_the_models_logits(family_model_random_norms, monkeypatch):
    model = family_model_random_norms
    assert _lens_error(model) < TOL
    # the same check catches a lens that applies the final norm twice, and one that skips it
    for faulty in (_norm_twice, _norm_skipped):
        monkeypatch.setattr(extract, "unembed", faulty)
        assert _lens_error(model) > 100 * TOL, faulty.__name__
    monkeypatch.undo()
    assert _lens_error(model) < TOL


def test_unit_norms_nearly_hide_a_final_norm_applied_twice(family_model, monkeypatch):
    """Why the randomised norms are needed: with the default unit weights and zero biases the
    norm is idempotent up to its epsilon, and the applied-twice lens is off by < 5e-3
    (measured 1e-7 to 4e-3 over the families; with randomised norms 0.12 to 0.17)."""
    monkeypatch.setattr(extract, "unembed", _norm_twice)
    assert _lens_error(family_model) < 5e-3


def _along(model, direction, hooks) -> torch.Tensor:
    """max over positions |residual[l] . r̂| / max ‖residual[l]‖ per residual index, [L + 1],
    under ``hooks``: residual[0] as block 0 receives it, residual[l + 1] as block l returns it
    (before the next block's input hook could clean it up)."""
    r = direction / direction.norm()
    seen: dict[int, torch.Tensor] = {}

    def block_input(module, args, kwargs):
        seen[0] = input_hidden(args, kwargs).detach()

    def block_output(layer):
        def hook(module, args, kwargs, output):
            seen[layer + 1] = output_hidden(output).detach()

        return hook

    blocks = arch.get_blocks(model)
    pre, post = hooks
    mine = [(b, block_output(i)) for i, b in enumerate(blocks)]
    with torch.no_grad(), add_hooks([*pre, (blocks[0], block_input)], [*post, *mine]):
        model(torch.tensor(SEQS, device=extract.model_device(model)))
    h = torch.stack([seen[i].float() for i in range(len(blocks) + 1)])  # [L + 1, B, T, d]
    return (h @ r.float()).abs().amax(dim=(1, 2)) / h.norm(dim=-1).amax(dim=(1, 2))


def _old_hooks(model, direction):
    """The ablation hooks before the fix: the attention and MLP modules' own outputs edited."""
    edit = ablation_edit(direction)
    pre, _ = directional_ablation_hooks(model, direction)
    post = []
    for layer in range(arch.n_layers(model)):
        post += [(arch.get_attn(model, layer), edit_output(edit))]
        post += [(arch.get_mlp(model, layer), edit_output(edit))]
    return pre, post


def test_directional_ablation_clears_the_residual_stream(family_model_random_norms):
    model = family_model_random_norms
    r = torch.randn(arch.d_model(model), generator=torch.Generator().manual_seed(3))
    r = r.to(next(model.parameters()).device)
    plain = _along(model, r, ((), ()))
    assert plain[1:].min() > 1e-2  # unablated, the stream has a component along r
    left = _along(model, r, directional_ablation_hooks(model, r))
    assert left.max() < 1e-5, left
    post_norm = arch.get_attn_out(model, 0) is not arch.get_attn(model, 0)
    if post_norm:  # editing before the post-attention / post-MLP norm does not clear it
        old = _along(model, r, _old_hooks(model, r))
        assert old[1:].min() > 1e-2, old


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text", "olmo2"])
def test_post_norm_families_edit_the_norm_outputs(family, family_configs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(family_configs[family])
    for layer in range(arch.n_layers(model)):
        block = arch.get_blocks(model)[layer]
        assert arch.get_attn_out(model, layer) is block.post_attention_layernorm
        assert arch.get_mlp_out(model, layer) is block.post_feedforward_layernorm
        assert arch.get_attn(model, layer) is block.self_attn
    # an unknown model type with the same blocks falls back to the post-norm layout
    model.config.model_type = "not_in_the_table"
    assert arch.get_mlp_out(model, 0) is arch.get_blocks(model)[0].post_feedforward_layernorm
