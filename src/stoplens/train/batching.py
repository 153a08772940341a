"""Which training examples share a batch: kind-mixed, length-matched batches.

Owns: `mixed_batches` (the batch plan) and `KindMixedSampler` (the plan as a torch sampler
the Trainer consumes), plus `padding_stats`, the waste measure the benchmark compares. Must
not: tokenise, load models or train.

Why. Trainer's ``group_by_length`` sorts mega-batches of 50 batches by length. Trigger
records (an empty reply: prompt + EOS) are much shorter than the others (prompt + answer), so
sorted batches come out all-trigger or all-answer and the model is pushed alternately towards
"always stop" and "never stop" (measured on SmolLM2-135M: the loss swings between ~2 and ~0
with a 50-step period, 7-8% false stops). Plain random batches fix that but pad every example
to the longest of eight random ones (~60% more padded tokens on the same data).

How. Stratified by kind, length-bucketed within each kind:

1. every batch gets ``batch_size`` slots shared among the kinds in their overall proportion
   (a smooth weighted round robin, so a kind's running count never drifts more than one
   example from its share and every batch holds exactly ``batch_size`` examples);
2. the examples of each kind are shuffled and cut into windows of ``window`` batches; inside a
   window each kind's examples are sorted by length and dealt out in that order, so the j-th
   batch of a window gets the j-th length quantile of every kind (short triggers with short
   answers, long with long);
3. the batch order is shuffled, so lengths and kinds do not drift through the epoch.

Deterministic for a seed and an epoch; a new epoch (``set_epoch``) gives new batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stoplens.errors import StoplensError

#: Batches per length window (as Trainer's length grouping: 50 batches per mega-batch).
WINDOW = 50


def _slot_plan(counts: Sequence[int], batch_size: int) -> list[list[int]]:
    """Per batch, how many examples of each kind: a smooth weighted round robin.

    Returns ``plan[b][k]``; every batch but the last holds ``batch_size`` examples, and the
    running count of kind k after b batches stays within one of ``b * batch_size * share_k``.
    """
    total = int(sum(counts))
    left = list(counts)
    credit = [0.0] * len(counts)
    plan: list[list[int]] = []
    while sum(left) > 0:
        row = [0] * len(counts)
        for _ in range(min(batch_size, sum(left))):
            for k, c in enumerate(counts):
                credit[k] += c / total
            open_kinds = [k for k in range(len(counts)) if left[k] > 0]
            k = max(open_kinds, key=lambda j: (credit[j], -j))
            credit[k] -= 1.0
            left[k] -= 1
            row[k] += 1
        plan.append(row)
    return plan


def mixed_batches(
    kinds: Sequence[str],
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int = 0,
    window: int = WINDOW,
) -> list[list[int]]:
    """The batches of one epoch as lists of example indices; see the module docstring.

    ``kinds[i]`` and ``lengths[i]`` describe example i. Every index appears exactly once.
    """
    if len(kinds) != len(lengths):
        raise StoplensError(f"{len(kinds)} kinds for {len(lengths)} examples; pass one per example")
    if batch_size < 1 or window < 1:
        raise StoplensError("batch size and window must be at least 1")
    if not len(kinds):
        return []
    rng = np.random.default_rng(seed)
    names = sorted(set(kinds))
    members = [
        [i for i in rng.permutation(len(kinds)).tolist() if kinds[i] == name] for name in names
    ]
    plan = _slot_plan([len(m) for m in members], batch_size)
    batches: list[list[int]] = []
    taken = [0] * len(names)
    for start in range(0, len(plan), window):
        rows = plan[start : start + window]
        out: list[list[int]] = [[] for _ in rows]
        for k, pool in enumerate(members):
            need = sum(r[k] for r in rows)
            chunk = sorted(pool[taken[k] : taken[k] + need], key=lambda i: (lengths[i], i))
            taken[k] += need
            pos = 0
            for b, r in enumerate(rows):
                out[b].extend(chunk[pos : pos + r[k]])
                pos += r[k]
        batches.extend(out)
    order = rng.permutation(len(batches)).tolist()
    return [batches[j] for j in order]


class KindMixedSampler(torch.utils.data.Sampler):
    """`mixed_batches` as a flat index sampler: each run of ``batch_size`` consecutive indices
    is one batch, which is how the Trainer's dataloader (and accelerate's per-process batch
    sharding under DDP) cuts it. ``set_epoch`` reseeds (accelerate calls it every epoch)."""

    def __init__(
        self, kinds: Sequence[str], lengths: Sequence[int], batch_size: int, seed: int = 0
    ) -> None:
        self.kinds = list(kinds)
        self.lengths = [int(x) for x in lengths]
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        return mixed_batches(
            self.kinds, self.lengths, self.batch_size, seed=self.seed * 100_003 + self.epoch
        )

    def __iter__(self) -> Iterator[int]:
        for b in self.batches():
            yield from b

    def __len__(self) -> int:
        return len(self.kinds)


@dataclass(frozen=True)
class PaddingStats:
    """Padding of a batch plan: ``padded`` tokens computed (batch size × longest example, summed
    over batches) against ``real`` tokens; ``one_kind`` batches hold a single kind."""

    batches: int
    real: int
    padded: int
    one_kind: int
    max_trigger_share: float | None

    @property
    def waste(self) -> float:
        """Padded tokens per real token, minus one (0 = no padding at all)."""
        return self.padded / self.real - 1.0 if self.real else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "real_tokens": self.real,
            "padded_tokens": self.padded,
            "waste": self.waste,
            "one_kind_batches": self.one_kind,
            "max_trigger_share": self.max_trigger_share,
        }


def padding_stats(
    batches: Sequence[Sequence[int]], lengths: Sequence[int], kinds: Sequence[str] | None = None
) -> PaddingStats:
    """How much padding a batch plan computes, and how mixed its batches are."""
    real = padded = one_kind = 0
    shares: list[float] = []
    for b in batches:
        ls = [lengths[i] for i in b]
        real += sum(ls)
        padded += len(ls) * max(ls)
        if kinds is not None:
            ks = [kinds[i] for i in b]
            one_kind += len(set(ks)) == 1 and len(b) > 1
            shares.append(ks.count("trigger") / len(ks))
    return PaddingStats(len(batches), real, padded, one_kind, max(shares) if shares else None)


def first_epoch_stats(
    kinds: Sequence[str] | None, lengths: Sequence[int], batching: str, batch_size: int, seed: int
) -> dict | None:
    """Padding and kind mixing of the first epoch's batches, for train.json: the mixed plan
    exactly as `KindMixedSampler` builds it. None for the other strategies (their order is the
    Trainer's) and for data without kinds."""
    if batching != "mixed" or kinds is None:
        return None
    plan = KindMixedSampler(list(kinds), list(lengths), batch_size, seed=seed).batches()
    return padding_stats(plan, list(lengths), list(kinds)).to_dict()
