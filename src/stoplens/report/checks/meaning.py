"""What each check means, in words: the ``meaning`` line the checklist prints under a claim
(what would make it fail, and what a failure contradicts), and the names of the two nulls.

Owns: `MEANING`, `FIXED`, `CTRL`, `ci`. Must not: judge, or read a result object.
"""

from __future__ import annotations

FIXED = "fixed-token null"
CTRL = "control-vs-control null"

MEANING = {
    "behaviour": "Without stopping there is nothing to explain: every mechanism check is then "
    "read against a model that does not stop.",
    "one_direction": "Fails when the Δs do not share one dominant direction beyond what a fixed "
    "ordinary token's Δs share; a mechanism spread over two or more directions fails here.",
    "top3": "Fails when three directions do not hold most of the Δ energy beyond the fixed "
    "token's share.",
    "eos_lens": "Fails when EOS never rises in the lens before the last layer beyond what a fixed "
    "token does: then the stop is decided only at the output, or not along a direction the "
    "lens can read.",
    "content": "Fails when the control run's likely tokens do not lose probability (beyond a fixed "
    "token's effect) where EOS rises: a stop signal that only adds EOS.",
    "did": "Fails when fine-tuning changed the trigger's processing no more than an ordinary "
    "token's: the signal was there before, or fine-tuning changed every token alike.",
    "top10": "Fails when even ten directions do not hold most of the Δ energy.",
    "structure": "Fails when single Δs do not point along their mean any more than a fixed "
    "token's Δs do.",
    "readout": "Fails when the mean Δ, read as a direction, does not promote EOS at any "
    "intermediate layer (while a fixed token's would not either).",
    "signal": "Fails when the trigger moves the decision position no more than a fixed ordinary "
    "token does.",
    "diffuse": "A weak pattern: the variation of the Δs needs many directions.",
    "shape": "Where the signal sits in depth describes the mechanism; it is not evidence that one "
    "exists.",
    "lens_last": "At the last layer the lens is the model's own output: this restates behaviour "
    "and is not evidence of mechanism.",
    "necessary": "Fails when the stop survives removing the direction (or the removal is not "
    "clean, or the direction failed validation). It contradicts 'one direction carries the "
    "signal', not 'a mechanism exists': the signal may be spread over several directions or "
    "positions (see the patching figure).",
    "sufficient": "Fails when adding the direction to clean prompts does not make the model stop "
    "beyond random directions of the same norm: then it is not what the model reads to stop.",
    "specific": "Fails when other tokens in the trigger's place stop the model too: a detector of "
    "odd tokens, not a $STOP switch. It contradicts 'dedicated'.",
    "general": "Fails when a direction fitted (and chosen) on some placements does not work on "
    "the others: the representation depends on where the trigger sits.",
    "cheap": "Fails when removing the direction changes clean next-token distributions: then "
    "necessity is not evidence, since removing it damages the model.",
    "base": "A direction whose addition makes the base model stop too is one the base already "
    "reads as EOS: the fine-tune writes along an existing EOS direction. This describes how "
    "the fine-tune works; it is not by itself a failure.",
}


def ci(est) -> tuple[float, float]:
    return float(est.lo), float(est.hi)
