"""The cost of a directional ablation on clean prompts (`stoplens.analyses.steering`): how far
it moves the next-token distribution (KL(ablated || original), against random-direction
ablation) and the perplexity of clean text with and without it.

Owns: `AblationCost`, `ablation_cost` and `perplexity_change`. Must not: run a forward pass
itself (`stoplens.interventions.readout`), choose the direction, plot, or write files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stoplens.analyses.results import Nulls
from stoplens.analyses.stats import Estimate
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import kl_divergence
from stoplens.interventions.primitives import Ablation
from stoplens.interventions.readout import Readout


@dataclass(frozen=True)
class AblationCost:
    """``kl``: KL(ablated || original) of the clean prompts' next-token distribution, mean
    with CI; ``kl_null_mean``: the same mean under random-direction ablation;
    ``perplexity``: see `perplexity_change`."""

    kl: Estimate
    kl_null_mean: float
    perplexity: dict[str, Any]


def perplexity_change(
    readout: Readout,
    pairs: EncodedPairs,
    ablation: Ablation,
    answers: Sequence[Sequence[int]] | None,
) -> dict[str, Any]:
    """Perplexity of the clean prompts' own tokens (or of reference ``answers`` after them)
    without and with the ablation."""
    clean = pairs.ctrl_ids
    if answers is not None:
        if len(answers) != len(pairs):
            raise ValueError("answers: one token-id list per pair is required")
        seqs = [list(c) + list(a) for c, a in zip(clean, answers, strict=True)]
        starts: list[int] | None = [len(c) for c in clean]
    else:
        seqs, starts = [list(c) for c in clean], None
    nll0, cnt = readout.nll(seqs, starts, None)
    nll1, _ = readout.nll(seqs, starts, ablation)
    tot = max(1, int(cnt.sum()))
    p0, p1 = math.exp(nll0.sum() / tot), math.exp(nll1.sum() / tot)
    on = "answers" if answers is not None else "clean prompts"
    return {"original": p0, "ablated": p1, "ratio": p1 / p0, "n_tokens": tot, "on": on}


def ablation_cost(
    readout: Readout,
    pairs: EncodedPairs,
    ablation: Ablation,
    clean_logits: torch.Tensor,
    null_kl: list[float],
    nulls: Nulls,
    answers: Sequence[Sequence[int]] | None,
) -> AblationCost:
    """The cost of ``ablation`` on the clean prompts of ``pairs``, whose unablated next-token
    logits are ``clean_logits`` [n, vocab]; ``null_kl``: the mean KL of each random-direction
    ablation."""
    ablated_logits = readout.logits(pairs.ctrl_ids, ablation)
    kl = nulls.ci(kl_divergence(ablated_logits, clean_logits).numpy())
    ppl = perplexity_change(readout, pairs, ablation, answers)
    return AblationCost(kl, float(np.mean(null_kl)), ppl)
