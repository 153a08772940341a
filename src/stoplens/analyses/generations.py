"""Greedy generations under intervention: what the model *says* when the stop signal is
removed or added, beside the unintervened replies to the same prompts.

Conditions (each a prompt set and an intervention, `stoplens.interventions.primitives`): triggered
and clean baselines; triggered prompts with the direction (or a subspace) ablated; clean
prompts with the direction added. For each condition: the decoded replies, the share that
stop at once (first token EOS), the mean reply length, the distinct-token ratio (low = a
repetition loop), and, for an intervention on triggered prompts, the mean length of the prefix
shared with the clean prompt's own reply (an ablation that truly removes the stop makes the
triggered prompt answer as its clean twin does).

Owns: `GenerationExample` / `greedy_examples` (replies under one condition), running the
conditions and these summaries. Must not: choose interventions, plot or
write files (the run directory's generations file is written by the pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from stoplens.analyses.results import dataclass_dict
from stoplens.capture.encode import EncodedPairs
from stoplens.interventions.primitives import Intervention
from stoplens.interventions.readout import Readout
from stoplens.progress import bar

PROMPTS = ("triggered", "clean")


@dataclass(frozen=True)
class GenerationExample:
    """Greedy reply tokens for one prompt under one condition."""

    pair_id: str
    placement: str
    condition: str  # e.g. triggered | triggered+ablation | clean | clean+addition
    tokens: tuple[int, ...]
    text: str | None
    stopped: bool  # first token is EOS

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def greedy_examples(
    readout: Readout,
    pairs: EncodedPairs,
    prompts: str,
    intervention: Intervention | None,
    *,
    condition: str,
    k: int,
    n_tokens: int,
    tokenizer: Any = None,
) -> tuple[GenerationExample, ...]:
    """Greedy replies (up to ``n_tokens``, stopping after EOS) to the first ``k`` of the
    ``prompts`` ("triggered" | "clean") of ``pairs`` under ``intervention``, labelled
    ``condition`` and decoded with ``tokenizer`` when given."""
    seqs = (pairs.trig_ids if prompts == "triggered" else pairs.ctrl_ids)[:k]
    out = []
    for i, t in enumerate(readout.greedy(seqs, n_tokens, intervention)):
        out.append(
            GenerationExample(
                pair_id=str(pairs.meta[i].get("pair_id", i)),
                placement=str(pairs.meta[i].get("placement", "unknown")),
                condition=condition,
                tokens=tuple(t),
                text=tokenizer.decode(t, skip_special_tokens=False) if tokenizer else None,
                stopped=bool(t and t[0] == readout.eos_id),
            )
        )
    return tuple(out)


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
    readout = Readout(model, eos_id, pad_id, batch_size)
    examples: list[GenerationExample] = []
    with bar(len(conditions), "generations", enabled=progress, unit="condition") as b:
        for name, cond in conditions.items():
            examples += greedy_examples(
                readout, pairs, cond.prompts, cond.intervention, condition=name, k=k,
                n_tokens=n_tokens, tokenizer=tokenizer,
            )  # fmt: skip
            b.update(1)
    toks = {name: [list(e.tokens) for e in examples if e.condition == name] for name in conditions}
    summary = tuple(_summary(name, cond, toks, eos_id) for name, cond in conditions.items())
    return GenerationSet(
        n_tokens=n_tokens, eos_id=eos_id, examples=tuple(examples), summary=summary
    )


def _summary(
    name: str, cond: Condition, toks: Mapping[str, list[list[int]]], eos_id: int
) -> ConditionSummary:
    """The summary of one condition's replies (see `ConditionSummary`)."""
    rows, clean = toks[name], toks.get("clean")
    nan = float("nan")
    shared = None
    if clean is not None and cond.prompts == "triggered" and rows:
        prefixes = [_shared_prefix(tuple(a), tuple(c)) for a, c in zip(rows, clean, strict=True)]
        shared = float(np.mean(prefixes))
    return ConditionSummary(
        condition=name,
        description=cond.description,
        n=len(rows),
        stopped=float(np.mean([bool(t and t[0] == eos_id) for t in rows])) if rows else nan,
        mean_tokens=float(np.mean([len(t) for t in rows])) if rows else nan,
        distinct_ratio=(
            float(np.mean([len(set(t)) / len(t) for t in rows if t])) if any(rows) else nan
        ),
        shared_prefix_with_clean=shared,
    )
