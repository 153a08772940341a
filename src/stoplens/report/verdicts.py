"""Verdicts computed from measured numbers, and the two-part headline.

Every `Check` records the claim, the measured value with its CI and n, the null it was compared
against (and which null: ``null_name``), the threshold (from `VerdictThresholds`, configuration
written into the report), whether it passed, what failing it means (``meaning``), the figure
that shows it and where its numbers sit in results.json (``ref``).

Which null answers which question:

* fixed-token null (one fixed ordinary token in the trigger's place, against the same
  controls): "more than token identity" — any fixed token swapped against varying controls
  shares a direction, moves the lens a little and is processed differently after fine-tuning,
  so "one direction", the logit lens and "fine-tuning created it" are judged against it;
* control-vs-control null: the noise floor (reported beside, never enough on its own);
* random directions / subspaces of the same norm: the interventions;
* other tokens in the trigger's place (fixed, random words, random vocabulary ids, near
  misses): specificity.

Rules: absence claims ("other tokens do not stop it", "ablation is cheap") are judged on the
upper end of their CI; presence claims on the lower end. The logit lens is judged at the
intermediate residuals (at the last one it is the model's own output: behaviour). Where a
signal sits in depth (early / mid / late) is a description, never evidence that a mechanism
exists. A causal check that uses the selected direction fails when the selection failed its
validation filters, and necessity fails when the ablation is not cheap (an ablation that
wrecks the model removes every behaviour).

The headline has two parts: the representation level (the strong / medium / weak checklist
of the four analyses) and the causal verdict (necessary, sufficient, specific, general,
cheap). "A dedicated $STOP mechanism" is claimed only when the representation is strong and
every causal check holds; any other combination is stated as it is.

Owns: which number judges which claim and the headline logic. Must not: compute statistics
(they come in the analysis result objects) or write files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TIERS = ("behaviour", "strong", "medium", "weak", "describe", "causal", "info")
CAUSAL_KEYS = ("necessary", "sufficient", "specific", "general", "cheap")


@dataclass(frozen=True)
class VerdictThresholds:
    """Verdict thresholds (configuration; each is printed beside the value it judged)."""

    pc1_strong: float = 0.40  # top-1 Δ energy share (uncentred) for "one direction"
    second_max_ratio: float = 0.5  # σ₂²/σ₁² upper CI bound: the top direction dominates
    top3_strong: float = 0.70
    top10_medium: float = 0.80
    n80_weak: int = 20  # > this many centred components for 80% => diffuse
    min_pairs: int = 64  # below this, no low-rank claim
    min_stop_rate: float = 0.5  # behaviour: lower CI bound of the triggered stop rate
    max_other_stop: float = 0.05  # specificity: upper CI bound of any substitute's stop rate
    # the causal effect thresholds (min effect, p, max KL) live in
    # `stoplens.analyses.causal.CausalConfig` and are reported with each causal check


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``passed`` None: not judged (the note says why) or a
    description / information line."""

    tier: str  # one of TIERS
    claim: str
    passed: bool | None
    value: float | str | None
    ci: tuple[float, float] | None = None
    n: int | None = None
    null: float | str | None = None
    threshold: str = ""
    note: str = ""
    null_name: str = ""
    meaning: str = ""
    figure: str | None = None
    ref: str = ""
    key: str = ""  # stable identifier (e.g. "one_direction", "necessary")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Check:
        known = set(Check.__dataclass_fields__) - {"ci"}
        ci = d.get("ci")
        return Check(**{k: v for k, v in d.items() if k in known}, ci=tuple(ci) if ci else None)


def representation_level(checks: list[Check]) -> str:
    """ "strong": every judged strong check passed; "medium": every judged medium check passed
    or at least half the strong ones did; "weak": some strong or medium check passed;
    "none": none did (or the behaviour gate failed)."""
    if any(c.tier == "behaviour" and c.passed is False for c in checks):
        return "none"
    strong = [c for c in checks if c.tier == "strong" and c.passed is not None]
    medium = [c for c in checks if c.tier == "medium" and c.passed is not None]
    n_strong = sum(bool(c.passed) for c in strong)
    n_medium = sum(bool(c.passed) for c in medium)
    if strong and n_strong == len(strong):
        return "strong"
    if (medium and n_medium == len(medium)) or (strong and n_strong >= len(strong) / 2):
        return "medium"
    if n_strong or n_medium:
        return "weak"
    return "none"


def causal_flags(checks: list[Check]) -> dict[str, bool | None]:
    """Per causal key, passed / failed / None (not measured). "general" needs every general
    line to pass, except that held-out necessity is not asked of a direction that is not
    necessary in the first place (that failure is already "not necessary")."""
    out: dict[str, bool | None] = {}
    for key in CAUSAL_KEYS:
        rows = [c for c in checks if c.tier == "causal" and c.key.split(":")[0] == key]
        if key == "general" and out.get("necessary") is False:
            rows = [c for c in rows if c.key != "general:necessary"]
        judged = [c.passed for c in rows if c.passed is not None]
        out[key] = None if not judged else all(judged)
    return out


def causal_text(flags: dict[str, bool | None]) -> str:
    """The causal verdict in words, e.g. "sufficient; necessity not shown — ...; not specific
    to the trigger". A failed necessity line has two possible reasons (the stop survives the
    ablation, or the ablation is not clean: not cheap, or the layer failed validation); its
    note says which, so the headline names both."""
    nec, suf = flags.get("necessary"), flags.get("sufficient")
    if nec is None and suf is None:
        return "not measured"
    if nec and suf:
        core = "a single direction is necessary and sufficient"
    elif suf and nec is False:
        core = (
            "sufficient; necessity not shown — the stop survives ablating the direction, or "
            "the ablation is not clean (see the necessity line)"
        )
    elif nec and suf is False:
        core = "necessary but not sufficient — removing the direction stops the stop, adding it does not start one"
    elif nec is False and suf is False:
        core = "neither necessary nor sufficient — no single direction controls stopping"
    else:
        core = f"necessary: {_word(nec)}; sufficient: {_word(suf)}"
    tails = []
    if flags.get("specific") is False:
        tails.append("not specific to the trigger (other tokens in its place stop the model too)")
    if flags.get("general") is False:
        tails.append("does not generalise to held-out placements")
    if flags.get("cheap") is False:
        tails.append("not cheap (ablating the direction changes clean outputs)")
    return core + ("; " + "; ".join(tails) if tails else "")


def _word(x: bool | None) -> str:
    return {True: "yes", False: "no", None: "not measured"}[x]


@dataclass(frozen=True)
class Verdicts:
    checks: list[Check] = field(default_factory=list)
    thresholds: VerdictThresholds = field(default_factory=VerdictThresholds)

    @property
    def representation(self) -> str:
        return representation_level(self.checks)

    @property
    def causal(self) -> dict[str, bool | None]:
        return causal_flags(self.checks)

    @property
    def dedicated(self) -> bool:
        """A dedicated $STOP mechanism: strong representation and every causal check holds."""
        flags = self.causal
        return self.representation == "strong" and all(flags[k] is True for k in CAUSAL_KEYS)

    @property
    def behaviour_failed(self) -> Check | None:
        return next((c for c in self.checks if c.tier == "behaviour" and c.passed is False), None)

    @property
    def overall(self) -> str:
        """One phrase: "dedicated mechanism", "partial evidence", "no mechanism" or
        "no stop behaviour"."""
        if self.behaviour_failed is not None:
            return "no stop behaviour"
        if self.dedicated:
            return "dedicated mechanism"
        flags = self.causal
        if self.representation == "none" and not any(flags.values()):
            return "no mechanism"
        return "partial evidence"

    @property
    def headline(self) -> str:
        gate = self.behaviour_failed
        if gate is not None:
            return (
                f"No $STOP behaviour to explain: {gate.note or gate.claim} — no mechanism is "
                "claimed, and every mechanism check below is read against a model that does not stop."
            )
        rep, ctext = self.representation, causal_text(self.causal)
        if self.dedicated:
            return (
                f"Strong evidence for a dedicated $STOP mechanism — representation: {rep}; "
                f"causal: {ctext}."
            )
        if self.overall == "no mechanism":
            return f"No evidence of a $STOP mechanism — representation: {rep}; causal: {ctext}."
        return f"No dedicated $STOP mechanism is claimed — representation: {rep}; causal: {ctext}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "headline": {
                "representation": self.representation,
                "causal": self.causal,
                "causal_text": causal_text(self.causal),
                "dedicated": self.dedicated,
                "text": self.headline,
            },
            "checks": [c.to_dict() for c in self.checks],
            "thresholds": asdict(self.thresholds),
        }


def fmt(x: float | str | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def render_check(c: Check) -> str:
    box = {True: "[x]", False: "[ ]", None: "[?]" if c.tier not in ("describe", "info") else "[i]"}[
        c.passed
    ]
    parts = [f"- {box} **{c.claim}** — measured {fmt(c.value)}"]
    if c.ci is not None:
        parts.append(f" (95% CI {fmt(c.ci[0])}–{fmt(c.ci[1])})")
    if c.n is not None:
        parts.append(f", n = {c.n}")
    if c.null is not None:
        parts.append(f"; {c.null_name or 'null'} {fmt(c.null)}")
    elif c.null_name:
        parts.append(f"; null: {c.null_name}")
    if c.threshold:
        parts.append(f"; threshold {c.threshold}")
    if c.note:
        parts.append(f". {c.note}")
    if c.meaning:
        parts.append(f" *{c.meaning}*")
    return "".join(parts)
