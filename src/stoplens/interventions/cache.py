"""The speed-up beside the science: never the same forward pass twice within a run.

The causal suite asks the same question many times: the unintervened TEST prompts and the
random-direction ablations (seeded, so the same directions) recur in the main effects, in
every held-out-placement split (whose prompts are subsets of TEST) and in the cross-model
effects. `OutcomeCache` keeps the two numbers per (intervention, prompt) -- the stop and the
stop score -- never the logits, so memory is O(prompts x interventions), independent of the
vocabulary. Results are the same with or without it.

An addition at residual[k] does not change blocks 0..k-1, and the suite adds many vectors
(the direction at several α, its random nulls) at the same k to the same prompts. So for
0 < k < L the clean prompts' residual[k] is kept (n x len x d, model dtype, on CPU; for the
last layer asked for only, so a layer sweep does not accumulate them) and each addition runs
only blocks k..L-1 from it.

Owns: `OutcomeCache`. Must not: decide what to measure, or live beyond one run (there is no
global cache: create one, pass it to the calls that may share work, drop it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from stoplens.capture.extract import Resume, residual_sequences, resume_from
from stoplens.interventions.primitives import Addition, Intervention, intervention_key
from stoplens.interventions.readout import Readout, intervened_logits, stop_outcomes
from stoplens.models import arch


class OutcomeCache:
    """Per-prompt stop outcomes (greedy first token is EOS; stop score) of one model under an
    intervention, computed once and looked up afterwards (see module docstring).
    ``forwards`` / ``hits`` count computed and reused prompt evaluations."""

    def __init__(self, model: nn.Module, eos_id: int) -> None:
        self.model = model
        self.eos_id = int(eos_id)
        self._rows: dict[tuple[tuple, tuple[int, ...]], tuple[bool, float]] = {}
        self._resid: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self.forwards = 0
        self.hits = 0

    @classmethod
    def of(cls, readout: Readout) -> OutcomeCache:
        return cls(readout.model, readout.eos_id)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def stored_residuals(self) -> int:
        """Number of (layer, prompt) residuals kept for resumed additions."""
        return len(self._resid)

    def check(self, model: nn.Module, eos_id: int) -> None:
        """Raise unless this cache belongs to ``model`` and ``eos_id``."""
        if model is not self.model or int(eos_id) != self.eos_id:
            raise ValueError("OutcomeCache: built for another model or EOS id; use one per model")

    def store(
        self, seqs: Sequence[Sequence[int]], intervention: Intervention | None, logits: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Record the outcomes of already computed last-position ``logits`` [n, vocab] and
        return them as `stop_outcomes` does."""
        stops, scores = stop_outcomes(logits, self.eos_id)
        self.forwards += len(seqs)
        key = intervention_key(intervention)
        for s, st, sc in zip(seqs, stops, scores, strict=True):
            self._rows[(key, tuple(int(t) for t in s))] = (bool(st), float(sc))
        return stops, scores

    def read(
        self, readout: Readout, seqs: Sequence[Sequence[int]], intervention: Intervention | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`outcomes` with ``readout``'s pad id and batch size (``readout`` must be of this
        cache's model)."""
        self.check(readout.model, readout.eos_id)
        return self.outcomes(
            seqs, intervention, pad_id=readout.pad_id, batch_size=readout.batch_size
        )

    def outcomes(
        self,
        seqs: Sequence[Sequence[int]],
        intervention: Intervention | None,
        *,
        pad_id: int = 0,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(stops bool [n], stop scores float64 [n]) of ``seqs`` under ``intervention``;
        only the prompts not seen before under it are run (in one batched pass)."""
        key = intervention_key(intervention)
        tuples = [tuple(int(t) for t in s) for s in seqs]
        missing = list(dict.fromkeys(t for t in tuples if (key, t) not in self._rows))
        if missing:
            resume = None
            if isinstance(intervention, Addition):
                resume = self._resume(intervention.layer, missing, pad_id, batch_size)
            logits = intervened_logits(
                self.model, missing, intervention, pad_id=pad_id, batch_size=batch_size,
                resume=resume,
            )  # fmt: skip
            self.store(missing, intervention, logits)
        self.hits += len(tuples) - len(missing)
        rows = [self._rows[(key, t)] for t in tuples]
        stops = np.array([r[0] for r in rows], dtype=bool)
        scores = np.array([r[1] for r in rows], dtype=np.float64)
        return stops, scores

    def _resume(
        self, layer: int, seqs: list[tuple[int, ...]], pad_id: int, batch_size: int
    ) -> Resume | None:
        """Start at block ``layer`` from the kept residual[layer] of ``seqs`` (captured now
        where missing); None where there is nothing to skip (layer 0 or L)."""
        if not 0 < layer < arch.n_layers(self.model):
            return None
        if any(k[0] != layer for k in self._resid):  # one layer at a time bounds the memory
            self._resid = {k: v for k, v in self._resid.items() if k[0] == layer}
        need = [t for t in seqs if (layer, t) not in self._resid]
        if need:
            got = residual_sequences(
                self.model, need, [layer], pad_id=pad_id, batch_size=batch_size
            )[layer]
            self._resid.update({(layer, t): h for t, h in zip(need, got, strict=True)})
        return resume_from(layer, [self._resid[(layer, t)] for t in seqs])
