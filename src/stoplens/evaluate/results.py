"""The typed results of `stoplens eval` and what is derived from per-record outcomes.

Owns: `AcceptanceThresholds`, `ScoreSummary`, `Condition`, `RecordScore`, `EvalResult` (frozen, with
`to_dict`), and the derivations that need no model: `record_scores` (per-record outcomes
from the decision-position readout), `conditions` (records grouped by kind and placement /
variant, rates with clustered 95% Wilson intervals) and `acceptance` (the thresholds
applied). Must not: run models, write files or plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stoplens.data.config import KINDS
from stoplens.errors import StoplensError
from stoplens.evaluate.metrics import DecisionReadout, Rate


@dataclass(frozen=True)
class AcceptanceThresholds:
    """Acceptance thresholds (configuration, written into eval.json beside the values).

    Triggered prompts: the stop rate, overall and on every placement, must reach
    ``min_stop_rate``. Clean prompts, near misses, distractors: the false-stop rate's
    ``false_stop_bound`` ("ci_high": the upper end of its 95% Wilson interval, so a small
    sample cannot pass by luck; "rate": the point estimate) must stay at or below
    ``max_false_stop_rate``.
    """

    min_stop_rate: float = 0.95
    max_false_stop_rate: float = 0.05
    false_stop_bound: str = "ci_high"

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_stop_rate": self.min_stop_rate,
            "max_false_stop_rate": self.max_false_stop_rate,
            "false_stop_bound": self.false_stop_bound,
        }


@dataclass(frozen=True)
class ScoreSummary:
    n: int
    mean: float | None
    median: float | None
    q05: float | None
    q95: float | None

    @classmethod
    def of(cls, x: np.ndarray) -> ScoreSummary:
        if x.size == 0:
            return cls(0, None, None, None, None)
        q = np.quantile(x, [0.5, 0.05, 0.95])
        return cls(int(x.size), float(x.mean()), float(q[0]), float(q[1]), float(q[2]))

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "q05": self.q05,
            "q95": self.q95,
        }


@dataclass(frozen=True)
class Condition:
    """One group of prompts. ``metric`` is "stop_rate" for triggered prompts (higher is
    better) and "false_stop_rate" for the others (lower is better)."""

    name: str  # e.g. "trigger", "trigger/prefix", "near_miss/STOP"
    kind: str
    group: str | None  # the placement (trigger) or variant (others); None = all of the kind
    metric: str
    base: Rate
    ft: Rate
    base_score: ScoreSummary
    ft_score: ScoreSummary

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "group": self.group,
            "metric": self.metric,
            "base": self.base.to_dict(),
            "ft": self.ft.to_dict(),
            "stop_score": {"base": self.base_score.to_dict(), "ft": self.ft_score.to_dict()},
        }


@dataclass(frozen=True)
class RecordScore:
    """Per-record outcome (both models): stop flag, stop score, KL(ft ‖ base) at the decision
    position."""

    record_id: str
    kind: str
    placement: str | None
    variant: str | None
    base_stop: bool
    ft_stop: bool
    base_score: float
    ft_score: float
    kl: float
    prompt_id: str | None = None  # records of one prompt share it (CIs cluster by it)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EvalResult:
    """Everything `evaluate` measured. ``records`` has one entry per evaluated record in input
    order; ``kl`` and ``ppl`` are dicts of plain numbers (see `to_dict`)."""

    conditions: tuple[Condition, ...]
    records: tuple[RecordScore, ...]
    kl: dict[str, Any]
    ppl: dict[str, Any]
    acceptance: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    out_of_template: EvalResult | None = None
    """The same measurements on the out-of-template set (`stoplens.data.oot`), if asked."""

    @property
    def passed(self) -> bool:
        """Acceptance on these records and, if present, on the out-of-template set."""
        oot = self.out_of_template
        return bool(self.acceptance.get("pass")) and (oot is None or oot.passed)

    def condition(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"no condition {name!r}; have {[c.name for c in self.conditions]}")

    def scores(self, kind: str, model: str) -> np.ndarray:
        """Stop scores [n] of ``model`` ("base" or "ft") on the records of ``kind``."""
        attr = {"base": "base_score", "ft": "ft_score"}[model]
        return np.array([getattr(r, attr) for r in self.records if r.kind == kind], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": "stoplens.eval/1",
            "meta": self.meta,
            "conditions": {c.name: c.to_dict() for c in self.conditions},
            "kl_ft_base": self.kl,
            "perplexity": self.ppl,
            "acceptance": self.acceptance,
            "records": [r.to_dict() for r in self.records],
        }
        if self.out_of_template is not None:
            out["out_of_template"] = self.out_of_template.to_dict()
            out["passed"] = self.passed
        return out


def record_scores(records: Sequence[dict], read: DecisionReadout) -> list[RecordScore]:
    """One `RecordScore` per record (input order) from both models' decision-position
    readout; kind, placement, variant and prompt id come from each record's ``meta``."""
    out = []
    for i, r in enumerate(records):
        meta = r.get("meta", {})
        out.append(
            RecordScore(
                record_id=str(meta.get("record_id", i)),
                kind=str(meta.get("kind", "clean")),
                placement=meta.get("placement"),
                variant=meta.get("variant"),
                base_stop=bool(read.base_stop[i]),
                ft_stop=bool(read.ft_stop[i]),
                base_score=float(read.base_score[i]),
                ft_score=float(read.ft_score[i]),
                kl=float(read.kl[i]),
                prompt_id=None if meta.get("prompt_id") is None else str(meta["prompt_id"]),
            )
        )
    return out


def conditions(recs: list[RecordScore]) -> list[Condition]:
    out = []

    def add(kind: str, group: str | None, members: list[RecordScore]) -> None:
        if not members:
            return
        b = np.array([r.base_score for r in members])
        f = np.array([r.ft_score for r in members])
        clusters = [r.prompt_id or r.record_id for r in members]
        out.append(
            Condition(
                name=kind if group is None else f"{kind}/{group}",
                kind=kind,
                group=group,
                metric="stop_rate" if kind == "trigger" else "false_stop_rate",
                base=Rate.clustered([r.base_stop for r in members], clusters),
                ft=Rate.clustered([r.ft_stop for r in members], clusters),
                base_score=ScoreSummary.of(b),
                ft_score=ScoreSummary.of(f),
            )
        )

    for kind in KINDS:
        members = [r for r in recs if r.kind == kind]
        add(kind, None, members)
        if kind == "clean":
            continue
        key = "placement" if kind == "trigger" else "variant"
        groups = sorted({str(getattr(r, key)) for r in members if getattr(r, key) is not None})
        for g in groups:
            add(kind, g, [r for r in members if str(getattr(r, key)) == g])
    return out


def acceptance(conds: list[Condition], th: AcceptanceThresholds) -> dict[str, Any]:
    if th.false_stop_bound not in ("ci_high", "rate"):
        raise StoplensError(
            f"false_stop_bound {th.false_stop_bound!r} is unknown; use 'ci_high' or 'rate'"
        )
    checks: dict[str, dict[str, Any]] = {}
    for c in conds:
        if c.ft.rate is None:
            continue
        if c.kind == "trigger":
            ok = c.ft.rate >= th.min_stop_rate
            key = "stop_rate_" + c.name.replace("/", "_")
            checks[key] = {"value": c.ft.rate, "n": c.ft.n, "min": th.min_stop_rate, "pass": ok}
        elif c.group is None:
            value = c.ft.ci_high if th.false_stop_bound == "ci_high" else c.ft.rate
            assert value is not None
            checks[f"false_stop_rate_{c.kind}"] = {
                "value": value,
                "rate": c.ft.rate,
                "n": c.ft.n,
                "basis": th.false_stop_bound,
                "max": th.max_false_stop_rate,
                "pass": value <= th.max_false_stop_rate,
            }
    return {"checks": checks, "pass": bool(checks) and all(v["pass"] for v in checks.values())}
