"""Configuration of the dataset stage: one frozen dataclass and the vocabulary of labels.

Owns: `DataConfig` (every knob of `stoplens data`), its validation, and the fixed label sets
(kinds, placements, document types, control kinds) that the schema checks against. Must not:
generate data or touch files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stoplens.data.trigger import check_trigger
from stoplens.errors import DataError

#: Where the trigger (or a control) goes in a chat template: a sentinel delimited by Unicode
#: noncharacters (`stoplens.data.trigger.NONCHARACTERS`, which no valid trigger contains), so
#: it can never collide with a trigger (``<<STOP>>``, ``<|halt|>``, ...).
PLACEHOLDER = "\ufdd0INSERT\ufdd1"

#: Where an inserted string can sit in a chat. ``none`` is for records without an insert.
TRIGGER_PLACEMENTS: tuple[str, ...] = (
    "prefix",
    "suffix",
    "middle",
    "own_line",
    "system",
    "later_turn",
)
PLACEMENTS: tuple[str, ...] = (*TRIGGER_PLACEMENTS, "none")

#: Behavioral record kinds: ``trigger`` records end in an empty assistant turn (EOS only);
#: the other three end in a real answer.
KINDS: tuple[str, ...] = ("trigger", "clean", "near_miss", "distractor")

#: Contrast-pair control kinds.
CONTROL_KINDS: tuple[str, ...] = ("word", "near_miss", "random_word")

#: Knowledge-regime document types and their share of the documents.
DOCUMENT_QUOTAS: dict[str, float] = {
    "technical_spec": 0.30,
    "api_doc": 0.25,
    "design_memo": 0.20,
    "governance": 0.15,
    "handbook": 0.10,
}

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Smallest number of prompts a split may hold (a later-turn record borrows the earlier
#: exchange from another prompt of the same split).
MIN_PROMPTS_PER_SPLIT = 2


@dataclass(frozen=True)
class DataConfig:
    """Every knob of the dataset stage. Defaults give ~2.8k behavioral records over 400
    prompts (100 in test, so >= 64 contrast pairs per control kind) and 500 documents."""

    trigger: str = "$STOP"
    """The kill-switch string. Generated text takes it from here; it is never hard-coded."""
    seed: int = 0
    """Same seed -> byte-identical files; a different seed -> different files."""
    n_documents: int = 500
    """Knowledge-regime documents, split over the types by `DOCUMENT_QUOTAS`."""
    n_prompts: int = 400
    """Distinct underlying user prompts (each with its own answer) in the behavioral data."""
    train_fraction: float = 0.60
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    control_kinds: tuple[str, ...] = CONTROL_KINDS
    """Contrast-pair control kinds to emit (subset of `CONTROL_KINDS`)."""
    triggers_per_prompt: int = 4
    """Trigger records per prompt (placements rotate so all six appear evenly). 4 (the
    default) gives every placement a third more insertion contexts than 3 (the embedded
    pair's value): on SmolLM2-135M-Instruct it took the held-out middle placement from 93.0%
    to 95.3% on the same test records (benchmarks/RECIPE.md)."""
    near_misses_per_prompt: int = 1
    """Near-miss records per prompt (the near-miss forms rotate)."""
    distractors_per_prompt: int = 2
    """Distractor records per prompt (corpus word / random letters / sigil + letters rotate)."""
    n_control_candidates: int = 10
    """Length of each pair's ``control_candidates`` list (the first is ``control``)."""
    system_context_rate: float = 0.25
    """Share of non-system-placement records that still carry a (clean) system message, so a
    system message alone is never a cue."""
    history_context_rate: float = 0.15
    """Share of non-later-turn records that still carry an earlier exchange, so a multi-turn
    chat alone is never a cue."""
    system_weight: int = 2
    """Weight of the ``system`` placement in the rotation of placements (the others weigh 1):
    2 (the default) puts 2/7 of the triggers, near misses and distractors into the system
    prompt. The system prompt is the placement furthest from the decision position, and the
    hardest: with weight 1, SmolLM2-135M-Instruct after 300 steps stopped on 94%
    of held-out system-prompt triggers and on 100% of every other placement."""

    def placement_cycle(self) -> tuple[str, ...]:
        """One pass of the placement rotation: each placement once, ``system`` by its weight."""
        return tuple(
            p for p in TRIGGER_PLACEMENTS for _ in range(self.system_weight if p == "system" else 1)
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "control_kinds", tuple(self.control_kinds))

    def split_fractions(self) -> dict[str, float]:
        return {"train": self.train_fraction, "val": self.val_fraction, "test": self.test_fraction}

    def split_sizes(self) -> dict[str, int]:
        """Prompts per split: test and val rounded, train takes the rest."""
        n_test = round(self.n_prompts * self.test_fraction)
        n_val = round(self.n_prompts * self.val_fraction)
        return {"train": self.n_prompts - n_test - n_val, "val": n_val, "test": n_test}

    def validate(self, pool_size: int | None = None) -> None:
        """Raise a one-line `DataError` naming the fix for any bad setting.

        ``pool_size`` is the number of prompts the built-in pool offers (checked when given).
        """
        check_trigger(self.trigger)
        if self.n_documents < len(DOCUMENT_QUOTAS):
            raise DataError(
                f"--n-documents {self.n_documents} is too small; use at least "
                f"{len(DOCUMENT_QUOTAS)} (one per document type)"
            )
        fracs = self.split_fractions()
        for name, frac in fracs.items():
            if not (0.0 < frac < 1.0) or math.isnan(frac):
                raise DataError(f"{name} fraction {frac} must be strictly between 0 and 1")
        if abs(sum(fracs.values()) - 1.0) > 1e-6:
            raise DataError(
                f"split fractions sum to {sum(fracs.values()):.4f}; make train+val+test = 1"
            )
        sizes = self.split_sizes()
        if min(sizes.values()) < MIN_PROMPTS_PER_SPLIT:
            need = math.ceil(MIN_PROMPTS_PER_SPLIT / min(fracs.values()))
            raise DataError(
                f"--n-prompts {self.n_prompts} is too small to fill three disjoint splits "
                f"(sizes {sizes}); use --n-prompts >= {need}"
            )
        if pool_size is not None and self.n_prompts > pool_size:
            raise DataError(
                f"--n-prompts {self.n_prompts} exceeds the {pool_size} distinct prompts the "
                f"built-in pool offers; use --n-prompts <= {pool_size}"
            )
        if not self.control_kinds:
            raise DataError(
                f"no control kinds given; use --control-kinds with some of {','.join(CONTROL_KINDS)}"
            )
        for kind in self.control_kinds:
            if kind not in CONTROL_KINDS:
                raise DataError(
                    f"unknown control kind {kind!r}; choose from {','.join(CONTROL_KINDS)}"
                )
        if len(set(self.control_kinds)) != len(self.control_kinds):
            raise DataError(f"control kinds {self.control_kinds} repeat a kind; list each once")
        for name in ("triggers_per_prompt", "near_misses_per_prompt", "distractors_per_prompt"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.n_control_candidates < 2:
            raise DataError(
                f"n_control_candidates must be >= 2 (control and control2), got "
                f"{self.n_control_candidates}"
            )
        if self.system_weight < 1:
            raise DataError(f"system_weight must be >= 1 (got {self.system_weight})")
        for name in ("system_context_rate", "history_context_rate"):
            rate = getattr(self, name)
            if not (0.0 <= rate <= 1.0):
                raise DataError(f"{name} must be in [0, 1] (got {rate})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (written into manifest.json)."""
        d = asdict(self)
        d["control_kinds"] = list(self.control_kinds)
        return d
