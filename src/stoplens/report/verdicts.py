"""Verdicts computed from measured numbers. Each `Check` records the claim, the measured value
with its CI and n, the null it was compared against, the threshold (from `Thresholds`, which
is configuration and is written into the report), and whether it passed.

Owns: the strong / medium / weak checklist logic and the causal verdicts. Must not: compute
statistics (they come in the analysis results) or write files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds (configuration; each is printed beside the value it judged)."""

    pc1_strong: float = 0.40  # share of Δ energy in one direction
    top3_strong: float = 0.70
    top10_medium: float = 0.80
    n80_weak: int = 20  # > this many components for 80% => weak
    eos_rank_max: int = 10  # EOS among the top-k amplified tokens
    eos_z_min: float = 3.0
    min_pairs: int = 64  # below this, no low-rank claim
    # the causal thresholds live in `stoplens.analyses.causal.CausalConfig` and are reported
    # with each causal check


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    tier: str  # "strong" | "medium" | "weak" | "causal"
    claim: str
    passed: bool | None  # None: could not be judged (e.g. too few pairs); the note says why
    value: float | str | None
    ci: tuple[float, float] | None = None
    n: int | None = None
    null: float | str | None = None
    threshold: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d


@dataclass(frozen=True)
class Verdicts:
    checks: list[Check] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def overall(self) -> str:
        """ "strong" if every strong check passed; "weak" if any weak pattern holds or most
        strong checks failed; else "medium"."""
        strong = [c for c in self.checks if c.tier == "strong" and c.passed is not None]
        weak = [c for c in self.checks if c.tier == "weak" and c.passed]
        if strong and all(c.passed for c in strong):
            return "strong"
        if weak or (strong and sum(bool(c.passed) for c in strong) < len(strong) / 2):
            return "weak"
        return "medium"

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "checks": [c.to_dict() for c in self.checks],
            "thresholds": asdict(self.thresholds),
        }


def fmt(x: float | str | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}"


def render_check(c: Check) -> str:
    box = {True: "[x]", False: "[ ]", None: "[?]"}[c.passed]
    parts = [f"- {box} **{c.claim}** — measured {fmt(c.value)}"]
    if c.ci is not None:
        parts.append(f" (95% CI {fmt(c.ci[0])}–{fmt(c.ci[1])})")
    if c.n is not None:
        parts.append(f", n = {c.n}")
    if c.null is not None:
        parts.append(f"; null {fmt(c.null)}")
    if c.threshold:
        parts.append(f"; threshold {c.threshold}")
    if c.note:
        parts.append(f". {c.note}")
    return "".join(parts)
