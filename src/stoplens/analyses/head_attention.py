"""Where the top heads look: attention from the decision (post-instruction) positions to the
trigger position in the triggered run, and to the control token at the same position in the
control run (eager attention, the model's own weights), with bootstrap 95% CIs over pairs.

Owns: `head_attention` and `HeadAttention`. Must not: choose the heads (`stoplens.analyses.
components` ranks them), plot or write files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.analyses.patching import position_groups
from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate, bootstrap_mean
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import model_device, pad_batch, run_batched
from stoplens.capture.hooks import add_hooks
from stoplens.capture.sites import Component, StopForward, stop_after
from stoplens.models import arch


@dataclass(frozen=True)
class HeadAttention:
    """Attention of one head from the decision (post-instruction) positions to the trigger
    position (triggered run) vs to the control token at that position (control run), mean
    over those positions per pair, bootstrap 95% CIs over pairs."""

    name: str
    layer: int
    head: int
    to_trigger: Estimate
    to_control: Estimate
    difference: Estimate

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@torch.no_grad()
def head_attention(
    model: nn.Module,
    pairs: EncodedPairs,
    heads: Sequence[Component],
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[HeadAttention, ...]:
    """For each head: attention from the post-instruction positions to the trigger position
    (triggered runs) and to the control token there (control runs); see `HeadAttention`."""
    heads = [h for h in heads if h.head is not None]
    if not heads or len(pairs) == 0:
        return ()
    layers = sorted({h.layer for h in heads})
    post = position_groups(pairs, ("post",))["post"]
    device = model_device(model)

    def weights(seqs) -> torch.Tensor:  # [n, len(heads)]
        def one_batch(idx: list[int]) -> torch.Tensor:
            ids, mask, pos_ids = pad_batch([seqs[i] for i in idx], pad_id, device)
            store: dict[int, torch.Tensor] = {}

            def grab(layer):
                def hook(module, args, kwargs, output):
                    w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
                    if w is None:
                        raise RuntimeError("attention weights not returned (eager attention)")
                    store[layer] = w.detach().float().cpu()

                return hook

            hooks = [(arch.get_attn(model, layer), grab(layer)) for layer in layers]
            with (
                add_hooks((), [*hooks, stop_after(model, max(layers))]),
                contextlib.suppress(StopForward),
            ):
                model(input_ids=ids, attention_mask=mask, position_ids=pos_ids, use_cache=False)
            out = torch.zeros(len(idx), len(heads))
            for bi, i in enumerate(idx):
                t, ps = pairs.trigger_pos[i], post[i]
                for k, h in enumerate(heads):
                    out[bi, k] = store[h.layer][bi, h.head, ps, t].mean() if ps else float("nan")
            return out

        return run_batched(one_batch, [len(s) for s in seqs], batch_size, progress=False)

    with arch.eager_attention(model):
        wt = weights(pairs.trig_ids).double().numpy()
        wc = weights(pairs.ctrl_ids).double().numpy()
    out = []
    for k, h in enumerate(heads):
        ests = [bootstrap_mean(x[:, k], n_boot=n_boot, seed=seed) for x in (wt, wc, wt - wc)]
        assert all(isinstance(e, Estimate) for e in ests)
        out.append(HeadAttention(h.name, h.layer, int(h.head or 0), *ests))  # type: ignore[arg-type]
    return tuple(out)
