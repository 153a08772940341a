"""Small, exact metric functions: Wilson intervals, the stop score, KL, the decision-position
readout of both models (through `stoplens.capture.extract`, the one forward path for "the model
stops") and the teacher-forced logits perplexity needs.

Shapes: ``logits`` is [N, V]; scores and flags are [N]. Everything is computed in float32 (or
float64 where stated) on the logits' device and returned on CPU. Must not: know conditions,
records or files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stoplens.capture.extract import (
    batch_overhead,
    kl_divergence,
    last_logits,
    pad_batch,
    prefix_groups,
    run_batched,
    stop_score,
)
from stoplens.models import arch

__all__ = [
    "DecisionReadout",
    "Rate",
    "decision_readout",
    "kl_divergence",
    "pad_right",
    "stop_score",
    "target_logits",
    "wilson_interval",
]


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with a 95% Wilson score interval; for records that come in
    clusters (one prompt, several placements) the interval uses the effective sample size
    ``n_eff`` over ``n_clusters`` prompts (`stoplens.analyses.stats.clustered_wilson`)."""

    k: int
    n: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    n_clusters: int | None = None
    n_eff: float | None = None

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        if n == 0:
            return cls(0, 0, None, None, None)
        lo, hi = wilson_interval(k, n)
        return cls(int(k), int(n), k / n, lo, hi)

    @classmethod
    def clustered(cls, flags: Sequence[bool], clusters: Sequence[object]) -> Rate:
        """The rate of ``flags`` with the interval clustered by ``clusters`` (e.g. prompt ids)."""
        from stoplens.analyses.stats import clustered_wilson

        n = len(flags)
        if n == 0:
            return cls(0, 0, None, None, None)
        est, n_eff, c = clustered_wilson(flags, clusters)
        return cls(int(sum(bool(f) for f in flags)), n, est.value, est.lo, est.hi, c, n_eff)

    def to_dict(self) -> dict:
        d = {"k": self.k, "n": self.n, "rate": self.rate, "ci95": [self.ci_low, self.ci_high]}
        if self.n_clusters is not None:
            d["n_clusters"] = self.n_clusters
            d["n_eff"] = self.n_eff
        return d


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval for a binomial proportion k/n (n > 0); the one
    implementation is `stoplens.analyses.stats.wilson`."""
    from stoplens.analyses.stats import wilson

    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError("k must be in 0..n")
    e = wilson(k, n)
    return e.lo, e.hi


def _device(model: nn.Module) -> torch.device:
    return arch.input_device(model)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T], attention_mask [B, T]) on CPU, every sequence starting at column 0
    (`stoplens.capture.extract.pad_batch` without the position ids)."""
    ids, mask, _ = pad_batch(seqs, pad_id, torch.device("cpu"))
    return ids, mask


@dataclass(frozen=True)
class DecisionReadout:
    """Both models at each prompt's decision position (the last prompt position), [N] each:
    the stop score, whether the argmax is the stop token, and KL(ft ‖ base) in nats."""

    ft_score: np.ndarray
    base_score: np.ndarray
    ft_stop: np.ndarray
    base_stop: np.ndarray
    kl: np.ndarray


@torch.no_grad()
def decision_readout(
    ft: nn.Module,
    base: nn.Module,
    seqs: Sequence[Sequence[int]],
    eos_id: int,
    pad_id: int,
    *,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "decision position",
) -> DecisionReadout:
    """Read both models at the decision position through `stoplens.capture.extract`: the same
    length-sorted batches, out-of-memory back-off (`run_batched`) and last-position logits
    (`last_logits`: the forward pass stops after the last block; the final norm and LM head
    run on the last positions only) as capture and the interventions use. Padded vocabularies
    are compared on their shared part. The batches keep the prompts that begin with the
    common template header together, so each runs that header once
    (`stoplens.capture.extract.prefix_groups`)."""

    def one_batch(idx: list[int]) -> torch.Tensor:
        batch = [seqs[i] for i in idx]
        lf = last_logits(ft, batch, pad_id=pad_id, batch_size=len(batch), progress=False)
        lb = last_logits(base, batch, pad_id=pad_id, batch_size=len(batch), progress=False)
        v = min(lf.shape[-1], lb.shape[-1])
        lf, lb = lf[:, :v], lb[:, :v]
        cols = (
            stop_score(lf, eos_id),
            stop_score(lb, eos_id),
            lf.argmax(-1) == eos_id,
            lb.argmax(-1) == eos_id,
            kl_divergence(lf, lb),
        )
        return torch.stack([c.double() for c in cols], dim=1)  # [B, 5]

    lengths, groups = [len(s) for s in seqs], prefix_groups(seqs)
    over = batch_overhead(ft)
    out = run_batched(one_batch, lengths, batch_size, desc, progress, groups, over).numpy()
    return DecisionReadout(
        ft_score=out[:, 0],
        base_score=out[:, 1],
        ft_stop=out[:, 2].astype(bool),
        base_stop=out[:, 3].astype(bool),
        kl=out[:, 4],
    )


@torch.no_grad()
def target_logits(
    model: nn.Module, seqs: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced logits at every labelled position: (logits [M, V] float32 CPU predicting
    each label, targets [M]); M = number of labels != -100 over the batch."""
    ids, mask = pad_right(seqs, pad_id)
    lab, _ = pad_right(labels, -100)
    dev = _device(model)
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).logits
    tgt = lab[:, 1:]  # position t predicts token t + 1
    sel = tgt != -100
    return logits[:, :-1][sel.to(logits.device)].float().cpu(), tgt[sel]
