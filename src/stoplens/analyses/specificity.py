"""Is the stop specific to the trigger? Stop rates of the same prompts with other tokens in the
trigger's place.

An "any odd token stops" model passes every test of *how* a stop is carried (it has a stop
direction, EOS rises in the lens, fine-tuning created it) and still is no $STOP switch. So,
on the aligned TEST pairs, each prompt is also run with the trigger replaced (token
substitution at the trigger position, so the sequences stay aligned) by:

* ``fixed``      the fixed ordinary token of the fixed-token null (one word for every prompt);
* ``word``       a random ordinary vocabulary word per prompt (alphabetic, >= 3 letters);
* ``rare``       a random token id per prompt from the whole vocabulary (subword pieces,
                 digits, punctuation, rare words: the "odd token" probe);
* ``near_miss``  the trigger's near-miss spellings that are one token in this tokenizer
                 (``STOP``, ``stop``, ...), cycled over prompts (absent when none is).

Stop = the greedy first reply token is EOS. Each rate carries a Wilson 95% interval (one
prompt per pair and kind, so no clustering). The triggered and control rates of the same
prompts come with it: the triggered rate is the behaviour the analyses set out to explain.
An absence claim ("other tokens do not stop it") is judged on the upper end of the interval.

Owns: the substitutions and their stop rates. Must not: judge (the report does), plot or write.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from stoplens.analyses.stats import Estimate, jsonable, wilson
from stoplens.capture.encode import EncodedPairs, random_vocab_words, single_token_id
from stoplens.capture.extract import last_logits

SUBSTITUTES = ("fixed", "word", "rare", "near_miss")


@dataclass(frozen=True)
class SpecificityResult:
    """Stop rates on ``n`` TEST prompts: ``triggered`` (with the trigger), ``control`` (with
    the pair's control) and ``substitutes[kind]`` (see module docstring), Wilson 95% CIs.
    ``tokens[kind]``: the substituted tokens (decoded; up to 20 shown)."""

    n: int
    triggered: Estimate
    control: Estimate
    substitutes: dict[str, Estimate]
    tokens: dict[str, list[str]] = field(default_factory=dict)

    @property
    def worst(self) -> tuple[str, Estimate] | None:
        """The substitute kind with the highest stop rate (ties: the highest upper bound)."""
        if not self.substitutes:
            return None
        return max(self.substitutes.items(), key=lambda kv: (kv[1].value, kv[1].hi))

    def to_dict(self) -> dict[str, Any]:
        w = self.worst
        return jsonable(
            {
                "n": self.n,
                "triggered": self.triggered,
                "control": self.control,
                "substitutes": self.substitutes,
                "worst": None if w is None else {"kind": w[0], **w[1].to_dict()},
                "tokens": self.tokens,
            }
        )


def _substitute(pairs: EncodedPairs, ids: Sequence[int]) -> list[list[int]]:
    out = []
    for seq, tp, tid in zip(pairs.trig_ids, pairs.trigger_pos, ids, strict=True):
        s = list(seq)
        s[tp] = int(tid)
        out.append(s)
    return out


def substitute_ids(
    tokenizer, pairs: EncodedPairs, trigger_id: int, fixed_id: int | None, seed: int = 0
) -> dict[str, list[int]]:
    """Per substitute kind, one token id per pair (see module docstring)."""
    from stoplens.data.trigger import extra_near_miss_forms, near_miss_forms

    n = len(pairs)
    specials = {*tokenizer.all_special_ids, int(trigger_id)}
    used_controls = {ids[tp] for ids, tp in zip(pairs.ctrl_ids, pairs.trigger_pos, strict=True)}
    out: dict[str, list[int]] = {}
    if fixed_id is not None:
        out["fixed"] = [int(fixed_id)] * n
    out["word"] = random_vocab_words(tokenizer, n, seed, exclude=[trigger_id])
    rng = random.Random(f"{seed}:rare")
    vocab = [t for t in range(len(tokenizer)) if t not in specials]
    out["rare"] = [rng.choice(vocab) for _ in range(n)]
    trigger = tokenizer.convert_ids_to_tokens(int(trigger_id))
    try:
        forms = [f for _, f in near_miss_forms(str(trigger))] + extra_near_miss_forms(str(trigger))
    except ValueError:
        forms = []
    nm = []
    for f in forms:
        tid = single_token_id(tokenizer, f)
        if tid is not None and tid not in specials and tid not in used_controls and tid not in nm:
            nm.append(tid)
    if nm:
        out["near_miss"] = [nm[i % len(nm)] for i in range(n)]
    return out


def trigger_specificity(
    model: nn.Module,
    tokenizer,
    pairs: EncodedPairs,
    *,
    trigger_id: int,
    eos_id: int,
    fixed_id: int | None = None,
    pad_id: int = 0,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> SpecificityResult:
    """Stop rates of ``pairs``' prompts with the trigger, the control and each substitute."""
    if len(pairs) == 0:
        raise ValueError("trigger_specificity: no pairs")
    subs = substitute_ids(tokenizer, pairs, trigger_id, fixed_id, seed)
    seqs: list[list[int]] = [*pairs.trig_ids, *pairs.ctrl_ids]
    for kind in subs:
        seqs += _substitute(pairs, subs[kind])
    logits = last_logits(
        model, seqs, pad_id=pad_id, batch_size=batch_size, progress=progress, desc="specificity"
    )
    stops = (logits.argmax(-1) == int(eos_id)).numpy()
    n = len(pairs)

    def rate(block: int) -> Estimate:
        s = stops[block * n : (block + 1) * n]
        return wilson(int(np.sum(s)), n)

    rates = {kind: rate(2 + i) for i, kind in enumerate(subs)}
    shown = {kind: sorted({tokenizer.decode([t]) for t in ids})[:20] for kind, ids in subs.items()}
    return SpecificityResult(
        n=n, triggered=rate(0), control=rate(1), substitutes=rates, tokens=shown
    )
