"""The stop-decision term of the behavioral loss.

A behavioral example learns its final reply: one token (EOS) when the trigger is present, a
whole answer otherwise. With the loss a mean over learned tokens, a triggered example's one
decision weighs as much as one word of a clean answer, so the decision that matters (stop or
not, at the reply's first position) is a small share of the gradient: on SmolLM2-135M-Instruct
after 300 steps, 3 of 43 held-out triggers placed in the middle of a question were missed.

This term adds, per example, the binary cross-entropy of "the first reply token is the stop
token" at the decision position: ``-log p(stop)`` when the target is the stop token,
``-log(1 - p(stop))`` otherwise. It says nothing about *which* content token follows on a
clean prompt (so it does not pull the clean distribution towards the templates' answers),
and its gradient vanishes once the decision is confident, so it works on the hard cases.

Owns: `decision_rows`, `stop_decision_loss`. Must not: run models or choose the weight
(`stoplens.train.config.TrainConfig.stop_loss_weight`).
"""

from __future__ import annotations

import torch


def decision_rows(learned: torch.Tensor) -> torch.Tensor:
    """Indices, into the row-major list of learned positions (``learned`` is a boolean
    [batch, seq] mask), of each example's first learned position: its decision position.
    Examples with nothing learned have none."""
    counts = learned.sum(dim=1)
    starts = torch.cumsum(counts, dim=0) - counts
    return starts[counts > 0]


def stop_decision_loss(
    logits: torch.Tensor, target: torch.Tensor, learned: torch.Tensor, stop_id: int
) -> torch.Tensor:
    """Sum over examples of the stop decision's binary cross-entropy.

    ``logits``: [n_learned, vocab] at the learned positions, in ``learned``'s row-major order;
    ``target``: their [n_learned] targets. Computed from log-sum-exps, so a confident decision
    gives an exact zero-ish term and never ``log(0)``."""
    rows = decision_rows(learned)
    z = logits[rows].float()
    stop = target[rows].to(z.device) == stop_id
    lse_all = torch.logsumexp(z, dim=-1)
    log_p_stop = z[:, stop_id] - lse_all
    others = z.clone()
    others[:, stop_id] = float("-inf")
    log_p_other = torch.logsumexp(others, dim=-1) - lse_all
    return -torch.where(stop, log_p_stop, log_p_other).sum()
