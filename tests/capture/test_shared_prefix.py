"""A batch's shared prefix run once from the key/value cache computes what the full pass does."""

from __future__ import annotations

import pytest
import torch

from stoplens.capture.extract import (
    SHARED_PREFIX_MIN,
    capture_residuals,
    last_logits,
    prefix_groups,
)
from stoplens.interventions.primitives import Ablation, Addition, SubspaceAblation, hook_factory
from stoplens.interventions.readout import intervened_logits
from stoplens.models import arch

HEADER = [5, 9, 11, 13, 17, 19, 23, 29, 31, 37, 41]  # 11 tokens, like a chat template's header


def _prompts(n: int, seed: int = 0) -> list[list[int]]:
    """Most prompts begin with HEADER (varied lengths after it); a few do not (like the
    system-prompt placement, whose header differs)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        tail = torch.randint(3, 90, (int(torch.randint(2, 15, (1,), generator=g)),), generator=g)
        head = HEADER if i % 5 else [5, 9, *torch.randint(3, 90, (6,), generator=g).tolist()]
        out.append([*head, *tail.tolist()])
    return out


def _shared(model: torch.nn.Module, seqs: list[list[int]], fn) -> int:
    """How many batches ``fn`` runs from a shared prefix (counted on the model's calls)."""
    calls: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda m, a, k: calls.append(int(k["input_ids"].shape[1])), with_kwargs=True
    )
    try:
        fn()
    finally:
        handle.remove()
    return sum(1 for t in calls if t == len(HEADER))


@torch.no_grad()
def test_last_logits_equal_full_pass(family_model):
    seqs = _prompts(23)
    full = last_logits(family_model, seqs, batch_size=8, share_prefix=False, progress=False)
    shared = last_logits(family_model, seqs, batch_size=8, progress=False)
    torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)
    assert _shared(family_model, seqs, lambda: last_logits(family_model, seqs, batch_size=8,
                                                          progress=False)) >= 2  # fmt: skip


@torch.no_grad()
@pytest.mark.parametrize(
    "kind", ["ablation", "subspace", "addition0", "addition_mid", "addition_L"]
)
def test_interventions_equal_full_pass(family_model, kind):
    """The intervention acts on the prefix's keys and values too (run under its hooks)."""
    d, L = arch.d_model(family_model), arch.n_layers(family_model)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(d, generator=g) * 3
    iv = {
        "ablation": Ablation(v),
        "subspace": SubspaceAblation(torch.randn(2, d, generator=g)),
        "addition0": Addition(v, 0),
        "addition_mid": Addition(v, 1),
        "addition_L": Addition(v, L),
    }[kind]
    seqs = _prompts(17, seed=2)
    shared = intervened_logits(family_model, seqs, iv, batch_size=6)
    hooks = hook_factory(family_model, iv)
    full = last_logits(family_model, seqs, batch_size=6, hook_factory=hooks, share_prefix=False,
                       progress=False)  # fmt: skip
    plain = intervened_logits(family_model, seqs, None, batch_size=6)
    torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)
    assert (shared - plain).abs().max() > 1e-3  # the intervention did something
    assert _shared(family_model, seqs, lambda: intervened_logits(family_model, seqs, iv,
                                                                batch_size=6)) >= 2  # fmt: skip


@torch.no_grad()
def test_capture_reads_positions_after_the_prefix(family_model):
    seqs = _prompts(12, seed=3)
    pos = [[len(HEADER), len(s) - 1] if s[: len(HEADER)] == HEADER else [3, len(s) - 1]
           for s in seqs]  # fmt: skip
    kw = dict(batch_size=4, progress=False)
    full = capture_residuals(family_model, seqs, pos, share_prefix=False, **kw)
    shared = capture_residuals(family_model, seqs, pos, **kw)
    torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_no_sharing_where_a_read_position_lies_in_the_prefix(family_model):
    seqs = [[*HEADER, 50 + i, 60] for i in range(6)]

    def runs(pos: list[list[int]]) -> int:
        return _shared(family_model, seqs, lambda: capture_residuals(family_model, seqs, pos,
                                                                     progress=False))  # fmt: skip

    assert runs([[2, len(s) - 1] for s in seqs]) == 0
    assert runs([[len(s) - 1] for s in seqs]) == 1  # the same prompts, read after the prefix


@torch.no_grad()
def test_position_dependent_hooks_never_share(family_model):
    """A hook factory not declared uniform (e.g. patching) runs full passes."""
    seqs = [[*HEADER, 50 + i, 60] for i in range(6)]

    def factory(idx, ids):
        return (), ()

    def runs(**kw) -> int:
        return _shared(family_model, seqs, lambda: last_logits(family_model, seqs,
                                                               progress=False, **kw))  # fmt: skip

    assert runs(hook_factory=factory) == 0
    assert runs(hook_factory=factory, uniform_hooks=True) == 1  # declared uniform: shared


def test_prefix_groups():
    seqs = [[*HEADER, 1, 2], [*HEADER, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [*HEADER[:9], 7, 7]]
    assert prefix_groups(seqs) == [0, 0, 1, 1]
    assert prefix_groups([[1] * 20, [2] * 20, [3] * 20]) is None  # nothing shared by half
    short = [[*HEADER[: SHARED_PREFIX_MIN - 1], i, 7] for i in range(4)]
    assert prefix_groups(short) is None


@torch.no_grad()
def test_unmerged_lora_model_equal_full_pass(family_configs):
    """Under a peft wrapper (an unmerged adapter, as a checkpoint is read) the cache kwarg is
    the base model's, and the adapter acts on the prefix too."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(family_configs["qwen2"]).eval()
    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    model = get_peft_model(base, cfg).eval()
    seqs = _prompts(13, seed=4)
    full = last_logits(model, seqs, batch_size=5, share_prefix=False, progress=False)
    shared = last_logits(model, seqs, batch_size=5, progress=False)
    torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)
    with model.disable_adapter():
        plain = last_logits(model, seqs, batch_size=5, progress=False)
    assert (shared - plain).abs().max() > 1e-3
    assert _shared(model, seqs, lambda: last_logits(model, seqs, batch_size=5,
                                                   progress=False)) >= 2  # fmt: skip
