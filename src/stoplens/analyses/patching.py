"""Activation patching of the residual stream between a triggered prompt and its control.

Method. A pair's two prompts differ only at the trigger position. Run the *source* prompt,
keep its residual stream; run the *target* prompt, overwrite residual[l] at a group of
positions with the source's values, and read the stop score at the last position (the one that
predicts the first reply token). One cell per (layer l in 0..L, position group). Normalised
per pair so that 0 = the control run and 1 = the triggered run:

    recovered = (s_patched - s_ctrl) / (s_trig - s_ctrl)

* "denoising" (source = triggered, target = control): how much
  of the stop does this residual slice *carry* (1 = all of it);
* "noising" (source = control, target = triggered): 0 means the
  slice is *needed* (replacing it removes the stop).

Pairs whose triggered and control stop scores differ by less than ``min_gap`` are excluded
(the ratio is meaningless there) and counted. A group that is empty for a pair (e.g. nothing
between a suffix trigger and the template) leaves that pair out of that cell. Positions before
the trigger are identical in both runs (causal attention), so they are never patched.

Position groups (per pair; ``t`` trigger position, ``T`` length, ``k`` post-instruction
template length):
    trigger  [t]
    after    t+1 .. T-k-1   (the rest of the prompt after the trigger, up to the template)
    post     T-k .. T-1     (the post-instruction decision positions; includes the last)
    last     [T-1]
    suffix   t .. T-1       (everything from the trigger on: recovers 1 at every layer)

Batching: the source run's residuals are captured once per chunk of pairs, only at the
positions some group needs, then every (layer, group) cell is one batched patched pass
through `stoplens.capture.extract.last_logits` with a per-batch ``hook_factory``. Patching
residual[l] leaves blocks 0..l-1 of the target run unchanged, so the target run's residual
stream is also captured once per chunk (every position, layers 0 < l < L) and each cell's
pass resumes at block l from it: on average about half of the blocks are never recomputed.
That store holds chunk_size x (L - 1) x T x d values in the model's dtype (CPU memory);
lower ``chunk_size`` for very large models.

Owns: the generic patching sweep (`patch_residual_stream`), `activation_patching` (its two
modes, normalised), and
reading where the signal is present at the decision position (`candidate_layers_from_patching`,
which guides direction selection). Must not: plot or write files (the heatmap `5_activation_patching.png` is drawn by the report).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate, nan_bootstrap_mean
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import (
    capture_residuals,
    last_logits,
    model_device,
    residual_sequences,
    resume_from,
    stop_score,
)
from stoplens.capture.hooks import patch_edit, residual_edit_hooks
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

GROUPS = ("trigger", "after", "post", "last", "suffix")
DEFAULT_GROUPS = ("trigger", "after", "post", "last")
GROUP_RULES = {
    "trigger": "the trigger position t",
    "after": "t+1 .. T-k-1: prompt positions after the trigger, before the post-instruction template",
    "post": "T-k .. T-1: the post-instruction template (decision) positions, including the last",
    "last": "T-1: the last prompt position (predicts the first reply token)",
    "suffix": "t .. T-1: every position from the trigger on",
}


def position_groups(
    pairs: EncodedPairs, groups: Sequence[str] = DEFAULT_GROUPS
) -> dict[str, list[list[int]]]:
    """Per group, the positions it holds in each pair (see module docstring)."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown position group(s) {unknown}; choose from {GROUPS}")
    k = pairs.post_instruction
    out: dict[str, list[list[int]]] = {g: [] for g in groups}
    for ids, t in zip(pairs.trig_ids, pairs.trigger_pos, strict=True):
        T = len(ids)
        rule = {
            "trigger": [t],
            "after": list(range(t + 1, max(t + 1, T - k))),
            "post": list(range(max(t + 1, T - k), T)),
            "last": [T - 1] if t < T - 1 else [t],
            "suffix": list(range(t, T)),
        }
        for g in groups:
            out[g].append(rule[g])
    return out


def _patch_factory(model, layer, src, positions, cols, d, dtype, device):
    """hook_factory writing ``src[j, cols[j]]`` ([c, width, d]) at ``positions[j]`` of
    residual[layer] for the chunk-local items j of each batch."""

    def factory(idx, ids):
        B, T = ids.shape
        source = torch.zeros(B, T, d, dtype=dtype)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for b, j in enumerate(idx):
            if positions[j]:
                source[b, positions[j]] = src[j, cols[j]].to(dtype)
                mask[b, positions[j]] = True
        return residual_edit_hooks(model, layer, patch_edit(source.to(device), mask.to(device)))

    return factory


def _check_aligned(source_seqs, target_seqs, groups) -> None:
    n = len(source_seqs)
    if len(target_seqs) != n or any(len(g) != n for g in groups.values()):
        raise ValueError("patching: sources, targets and groups must have one entry per pair")
    for s, t in zip(source_seqs, target_seqs, strict=True):
        if len(s) != len(t):
            raise ValueError("patching: a source and its target differ in length")


def _slots(chunk: list[int], groups: Mapping[str, Sequence[Sequence[int]]]):
    """Every position any group needs, per pair of ``chunk``, padded to equal count by
    repetition (``slots``), and position -> slot index per pair (``slot_of``)."""
    need = [sorted({p for g in groups for p in groups[g][i]}) for i in chunk]
    width = max(1, max(len(x) for x in need))
    slots = [x + [x[-1] if x else 0] * (width - len(x)) for x in need]
    return slots, [{p: j for j, p in enumerate(x)} for x in need]


def _patch_chunk(model, runs, chunk, layers, eos_id, batch, edit, bar) -> torch.Tensor:
    """`patch_residual_stream` for the pairs ``chunk``: [len(chunk), n_layers, n_groups]."""
    source_seqs, target_seqs, groups = runs
    L = arch.n_layers(model)
    out = torch.full((len(chunk), len(layers), len(groups)), float("nan"))
    slots, slot_of = _slots(chunk, groups)
    src = capture_residuals(
        model, [source_seqs[i] for i in chunk], slots, layers, progress=False,
        desc="patch source", **batch,
    )  # fmt: skip  # [c, n_layers, width, d]
    tgt = [target_seqs[i] for i in chunk]
    mid = [layer for layer in layers if 0 < layer < L]
    tgt_resid = residual_sequences(model, tgt, mid, **batch) if mid else {}
    for li, layer in enumerate(layers):
        for gi, g in enumerate(groups):
            bar.update(1)
            pos_g = [list(groups[g][i]) for i in chunk]
            if not any(pos_g):
                continue
            cols = [[slot_of[j][p] for p in ps] for j, ps in enumerate(pos_g)]
            factory = _patch_factory(model, layer, src[:, li], pos_g, cols, *edit)
            resume = resume_from(layer, tgt_resid[layer]) if layer in tgt_resid else None
            logits = last_logits(
                model, tgt, hook_factory=factory, resume=resume, progress=False,
                desc="patch", **batch,
            )  # fmt: skip
            scores = stop_score(logits, eos_id)
            for j, i in enumerate(chunk):
                if groups[g][i]:
                    out[j, li, gi] = scores[j]
    return out


@torch.no_grad()
def patch_residual_stream(
    model: nn.Module,
    source_seqs: Sequence[Sequence[int]],
    target_seqs: Sequence[Sequence[int]],
    groups: Mapping[str, Sequence[Sequence[int]]],
    *,
    eos_id: int,
    layers: Sequence[int] | None = None,
    pad_id: int = 0,
    batch_size: int = 32,
    chunk_size: int = 64,
    progress: bool = False,
    desc: str = "patching",
) -> torch.Tensor:
    """The generic sweep: stop score at the last position of each target run with
    residual[l] at ``groups[g][i]`` replaced by the source run's values.

    Args:
        source_seqs, target_seqs: n aligned sequences (equal length per pair).
        groups: name -> n position lists (may be empty for a pair: that cell is NaN).
        layers: residual indices 0..L (default all).

    Returns:
        float32 [n, n_layers, n_groups] patched stop scores (group order = ``groups``' order).
    """
    _check_aligned(source_seqs, target_seqs, groups)
    n, L = len(source_seqs), arch.n_layers(model)
    layers = list(range(L + 1)) if layers is None else [int(x) for x in layers]
    out = torch.full((n, len(layers), len(groups)), float("nan"))
    batch: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size)
    edit = (arch.d_model(model), arch.get_embed(model).weight.dtype, model_device(model))
    n_cells = ((n + chunk_size - 1) // chunk_size) * len(layers) * len(groups)
    with progress_bar(total=n_cells, desc=desc, unit="cell", enabled=progress) as bar:
        for c0 in range(0, n, chunk_size):
            chunk = list(range(c0, min(n, c0 + chunk_size)))
            runs = (source_seqs, target_seqs, groups)
            out[chunk] = _patch_chunk(model, runs, chunk, layers, eos_id, batch, edit, bar)
    return out


@dataclass(frozen=True)
class PatchingResult:
    """Layer × position-group matrix of normalised stop-score recovery (0 = control run,
    1 = triggered run), mean over valid pairs with bootstrap 95% CIs.

    Shapes: ``mean``, ``lo``, ``hi``, ``n`` [n_layers, n_groups]; ``per_pair`` (normalised,
    NaN where excluded) and ``patched_score`` (raw stop scores) [n_pairs, n_layers, n_groups];
    ``score_trig``, ``score_ctrl``, ``valid`` [n_pairs]. ``group_positions[g][i]``: the
    positions group g patched in pair i; ``group_rules``: how they were chosen."""

    mode: str  # "denoising" (triggered -> control) | "noising" (control -> triggered)
    layers: tuple[int, ...]
    groups: tuple[str, ...]
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray
    per_pair: np.ndarray
    patched_score: np.ndarray
    score_trig: np.ndarray
    score_ctrl: np.ndarray
    valid: np.ndarray
    min_gap: float
    group_positions: dict[str, tuple[tuple[int, ...], ...]]
    group_rules: dict[str, str]
    n_boot: int
    seed: int

    @property
    def n_pairs(self) -> int:
        return int(self.valid.shape[0])

    @property
    def n_excluded(self) -> int:
        return int((~self.valid).sum())

    def cell(self, layer: int, group: str) -> Estimate:
        li, gi = self.layers.index(layer), self.groups.index(group)
        return Estimate(
            float(self.mean[li, gi]),
            float(self.lo[li, gi]),
            float(self.hi[li, gi]),
            int(self.n[li, gi]),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["n_pairs"] = self.n_pairs
        d["n_excluded"] = self.n_excluded
        return d


def activation_patching(
    model: nn.Module,
    pairs: EncodedPairs,
    *,
    eos_id: int,
    pad_id: int = 0,
    mode: str = "denoising",
    groups: Sequence[str] = DEFAULT_GROUPS,
    layers: Sequence[int] | None = None,
    min_gap: float = 1.0,
    batch_size: int = 32,
    chunk_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> PatchingResult:
    """Residual-stream patching between the triggered and control prompts of ``pairs``,
    per layer × position group, normalised per pair (see module docstring)."""
    if mode not in ("denoising", "noising"):
        raise ValueError(f"mode must be 'denoising' or 'noising', got {mode!r}")
    if len(pairs) == 0:
        raise ValueError("activation_patching: no pairs")
    L = arch.n_layers(model)
    layers = tuple(range(L + 1)) if layers is None else tuple(int(x) for x in layers)
    pos = position_groups(pairs, groups)
    s_trig, s_ctrl = (
        stop_score(
            last_logits(model, seqs, pad_id=pad_id, batch_size=batch_size, progress=False), eos_id
        ).double()
        for seqs in (pairs.trig_ids, pairs.ctrl_ids)
    )
    src, tgt = (pairs.trig_ids, pairs.ctrl_ids)
    if mode == "noising":
        src, tgt = tgt, src
    raw = patch_residual_stream(
        model, src, tgt, pos, eos_id=eos_id, layers=layers, pad_id=pad_id,
        batch_size=batch_size, chunk_size=chunk_size, progress=progress,
        desc=f"causal: patching ({mode})",
    ).double()  # fmt: skip
    valid = (s_trig - s_ctrl).abs() >= min_gap
    per_pair = _normalised(raw, s_trig, s_ctrl, valid)
    mean, lo, hi, count = nan_bootstrap_mean(per_pair, n_boot=n_boot, seed=seed)
    return PatchingResult(
        mode=mode, layers=layers, groups=tuple(groups), mean=mean, lo=lo, hi=hi,
        n=count.astype(int), per_pair=per_pair, patched_score=raw.numpy(),
        score_trig=s_trig.numpy(), score_ctrl=s_ctrl.numpy(), valid=valid.numpy(),
        min_gap=float(min_gap), group_positions={g: tuple(tuple(p) for p in pos[g]) for g in groups},
        group_rules={g: GROUP_RULES[g] for g in groups}, n_boot=n_boot, seed=seed,
    )  # fmt: skip


def _normalised(
    raw: torch.Tensor, s_trig: torch.Tensor, s_ctrl: torch.Tensor, valid: torch.Tensor
) -> np.ndarray:
    """Per pair, (patched - control) / (triggered - control); NaN for the pairs not ``valid``."""
    norm = (raw - s_ctrl[:, None, None]) / (s_trig - s_ctrl)[:, None, None]
    norm[~valid] = float("nan")
    return norm.numpy()


def candidate_layers_from_patching(patching: Any, group: str, min_recovery: float) -> list[int]:
    """Residual layers (1..L−1) where denoising activation patching of ``group`` (the decision
    position) recovers at least ``min_recovery`` of the stop score on average: where the
    signal is present at the decision position. ``patching``: a
    `stoplens.analyses.patching.PatchingResult` in "denoising" mode."""
    if patching.mode != "denoising" or group not in patching.groups:
        return []
    gi = patching.groups.index(group)
    L = max(patching.layers)
    return [
        int(layer)
        for li, layer in enumerate(patching.layers)
        if 0 < layer < L
        and np.isfinite(patching.mean[li, gi])
        and patching.mean[li, gi] >= min_recovery
    ]
