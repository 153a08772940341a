"""Helpers for the planted known-answer tests: stop rates and residuals measured with the
project's own primitives (`stoplens.interventions`, `stoplens.capture.extract`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import capture_residuals
from stoplens.capture.hooks import directional_ablation_hooks
from stoplens.interventions.readout import intervened_logits, stop_outcomes
from stoplens.models.planted import PlantedModel


def outcomes(
    pm: PlantedModel, seqs: Sequence[Sequence[int]], intervention=None, model=None
) -> tuple[np.ndarray, np.ndarray]:
    """(stops bool [n], stop scores [n]) of ``pm.model`` (or ``model``) under ``intervention``."""
    mdl = pm.model if model is None else model
    pad = int(pm.tokenizer.pad_token_id)  # type: ignore[attr-defined]
    return stop_outcomes(intervened_logits(mdl, seqs, intervention, pad_id=pad), pm.eos_id)


def stop_rate(
    pm: PlantedModel, seqs: Sequence[Sequence[int]], intervention=None, model=None
) -> float:
    """Share of ``seqs`` whose greedy first reply token is EOS (under ``intervention``)."""
    return float(outcomes(pm, seqs, intervention, model)[0].mean())


def substituted(pairs: EncodedPairs, token_id: int) -> list[list[int]]:
    """The triggered sequences with ``token_id`` in the trigger's place."""
    out = [list(s) for s in pairs.trig_ids]
    for s, p in zip(out, pairs.trigger_pos, strict=True):
        s[p] = int(token_id)
    return out


def decision_residuals(model, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """residual[0..L] at each sequence's last position: [n, L + 1, d]."""
    pos = [[len(s) - 1] for s in seqs]
    return capture_residuals(model, seqs, pos, pad_id=0, progress=False)[:, :, 0]


class SpanAblation:
    """Directional ablation of every one of ``directions`` (orthonormal [d] vectors) at once,
    i.e. of their span, with `directional_ablation_hooks` (an `Intervention` for
    `intervened_logits`)."""

    def __init__(self, directions: Sequence[torch.Tensor]) -> None:
        self.directions = list(directions)

    def hooks(self, model):
        pre: list = []
        post: list = []
        for d in self.directions:
            p, q = directional_ablation_hooks(model, d)
            pre += p
            post += q
        return pre, post
