"""Greedy generations under intervention: what the model *says* when the stop signal is
removed or added, beside the unintervened replies to the same prompts.

Conditions (each a prompt set and an intervention, `stoplens.interventions.primitives`): triggered
and clean baselines; triggered prompts with the direction (or a subspace) ablated; clean
prompts with the direction added. For each condition: the decoded replies, the share that
stop at once (first token EOS), the mean reply length, the distinct-token ratio (low = a
repetition loop), and, for an intervention on triggered prompts, the mean length of the prefix
shared with the clean prompt's own reply (an ablation that truly removes the stop makes the
triggered prompt answer as its clean twin does).

Owns: running the conditions and these summaries. Must not: choose interventions, plot or
write files (the run directory's generations file is written by the pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.steering import GenerationExample
from stoplens.capture.pairs import EncodedPairs
from stoplens.interventions.primitives import Intervention
from stoplens.interventions.readout import greedy_tokens
from stoplens.progress import bar

PROMPTS = ("triggered", "clean")


@dataclass(frozen=True)
class Condition:
    """Generate from the ``prompts`` ("triggered" | "clean") of the pairs under
    ``intervention`` (None: the unintervened baseline); ``description`` goes in the report."""

    prompts: str
    intervention: Intervention | None
    description: str


@dataclass(frozen=True)
class ConditionSummary:
    """Per condition: ``n`` prompts, ``stopped`` share (first token EOS), ``mean_tokens``
    (reply length, EOS included), ``distinct_ratio`` (unique / total reply tokens, mean over
    prompts), ``shared_prefix_with_clean`` (mean common-prefix length with the clean
    baseline's reply to the same pair; None for clean prompts or without that baseline)."""

    condition: str
    description: str
    n: int
    stopped: float
    mean_tokens: float
    distinct_ratio: float
    shared_prefix_with_clean: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class GenerationSet:
    """Greedy replies of up to ``n_tokens`` per prompt for every condition."""

    n_tokens: int
    eos_id: int
    examples: tuple[GenerationExample, ...]
    summary: tuple[ConditionSummary, ...]

    def by_condition(self, condition: str) -> tuple[GenerationExample, ...]:
        return tuple(e for e in self.examples if e.condition == condition)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def _shared_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def generate_conditions(
    model: nn.Module,
    pairs: EncodedPairs,
    conditions: Mapping[str, Condition],
    *,
    eos_id: int,
    pad_id: int = 0,
    n_prompts: int = 4,
    n_tokens: int = 40,
    tokenizer=None,
    batch_size: int = 32,
    progress: bool = True,
) -> GenerationSet:
    """Greedy replies (``n_tokens`` at most, stopping after EOS) for the first ``n_prompts``
    pairs under each condition; a condition named "clean" is the reference for the shared
    prefix (see module docstring)."""
    bad = [k for k, c in conditions.items() if c.prompts not in PROMPTS]
    if bad:
        raise ValueError(f"conditions {bad}: prompts must be one of {PROMPTS}")
    k = min(n_prompts, len(pairs))
    examples: list[GenerationExample] = []
    toks: dict[str, list[list[int]]] = {}
    with bar(len(conditions), "generations", enabled=progress, unit="condition") as b:
        for name, cond in conditions.items():
            seqs = (pairs.trig_ids if cond.prompts == "triggered" else pairs.ctrl_ids)[:k]
            toks[name] = greedy_tokens(
                model, seqs, n_tokens, eos_id, cond.intervention, pad_id=pad_id,
                batch_size=batch_size,
            )  # fmt: skip
            for i, t in enumerate(toks[name]):
                examples.append(
                    GenerationExample(
                        pair_id=str(pairs.meta[i].get("pair_id", i)),
                        placement=str(pairs.meta[i].get("placement", "unknown")),
                        condition=name,
                        tokens=tuple(t),
                        text=tokenizer.decode(t, skip_special_tokens=False) if tokenizer else None,
                        stopped=bool(t and t[0] == eos_id),
                    )
                )
            b.update(1)
    clean = toks.get("clean")
    summary = []
    for name, cond in conditions.items():
        rows = toks[name]
        shared = None
        if clean is not None and cond.prompts == "triggered" and rows:
            shared = float(
                np.mean(
                    [_shared_prefix(tuple(a), tuple(c)) for a, c in zip(rows, clean, strict=True)]
                )
            )
        summary.append(
            ConditionSummary(
                condition=name,
                description=cond.description,
                n=len(rows),
                stopped=float(np.mean([bool(t and t[0] == eos_id) for t in rows]))
                if rows
                else float("nan"),
                mean_tokens=float(np.mean([len(t) for t in rows])) if rows else float("nan"),
                distinct_ratio=float(np.mean([len(set(t)) / len(t) for t in rows if t]))
                if any(rows)
                else float("nan"),
                shared_prefix_with_clean=shared,
            )
        )
    return GenerationSet(
        n_tokens=n_tokens, eos_id=eos_id, examples=tuple(examples), summary=tuple(summary)
    )
