"""The model's own next-token logits at the last prompt position, read from a `DeltaSet`'s
residual[L] through `stoplens.capture.extract.unembed` (final norm, unembedding, soft-capping),
and the check that this lens at residual[L] is exactly the model's real output.

Owns: `control_logits` and `final_lens_check` (used by `stoplens.analyses.logit_lens`).
Must not: compute lens statistics, plot or write files.
"""

from __future__ import annotations

import torch
from torch import nn

from stoplens.capture.deltaset import DeltaSet
from stoplens.capture.extract import last_logits, model_device, unembed


@torch.no_grad()
def control_logits(model: nn.Module, ds: DeltaSet, pad_id: int = 0) -> torch.Tensor:
    """The control run's real next-token logits at the last position [n, vocab] (from the
    captured residual[L] when present, else one extra pass)."""
    L = ds.n_layers
    if L in ds.layers:
        h = ds.control("last")[:, ds.layer_pos(L), 0]
        return torch.cat([unembed(model, c).cpu() for c in h.split(256)])
    return last_logits(model, ds.pairs.ctrl_ids, pad_id=pad_id, progress=False)


@torch.no_grad()
def final_lens_check(model: nn.Module, ds: DeltaSet, n_check: int = 4) -> float | None:
    """max |unembed(residual[L]) − model(...).logits| at the last position of up to
    ``n_check`` control prompts, each run alone (no padding). None if residual[L] is absent."""
    L = ds.n_layers
    if L not in ds.layers:
        return None
    dev = model_device(model)
    worst = 0.0
    for i in range(min(n_check, ds.n)):
        ids = torch.tensor([ds.pairs.ctrl_ids[i]], device=dev)
        real = model(input_ids=ids, use_cache=False).logits[0, -1].float().cpu()
        lens = unembed(model, ds.control("last")[i, ds.layer_pos(L), 0]).cpu()
        v = min(real.shape[-1], lens.shape[-1])
        worst = max(worst, float((real[:v] - lens[:v]).abs().max()))
    return worst
