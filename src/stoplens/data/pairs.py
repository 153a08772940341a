"""Contrast pairs for the analyses: the same chat rendered with the trigger and with a control.

Owns: one template per prompt (placements rotating so all six are covered), and per control
kind the control, a second control of the same kind (``control2``, for control-vs-control null
baselines) and ~10 candidates (a later stage keeps only candidates with the trigger's token
length). Must not: tokenize (equal token length is asserted later against a real tokenizer).

Prompts whose question uses a stop word are left out: their text would confound the contrast.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from stoplens.data.behavioral import cycle
from stoplens.data.config import TRIGGER_PLACEMENTS, DataConfig
from stoplens.data.resources import load_words
from stoplens.data.templates import build_template, render_pair
from stoplens.data.topics import STOP_WORDS_TOPIC, Prompt
from stoplens.data.trigger import extra_near_miss_forms, near_miss_forms


def _near_miss_candidates(trigger: str, offset: int, n: int) -> list[str]:
    """The near-miss forms rotated by ``offset`` (so each is the control equally often),
    then extra spellings, ``n`` in all."""
    forms = [f for _, f in near_miss_forms(trigger)]
    k = offset % len(forms)
    return [*forms[k:], *forms[:k], *extra_near_miss_forms(trigger)][:n]


def _candidates(
    kind: str,
    rng: random.Random,
    index: int,
    config: DataConfig,
    words: Sequence[str],
    vocab: Sequence[str],
) -> list[str]:
    n = config.n_control_candidates
    if kind == "word":
        return rng.sample(list(words), min(n, len(words)))
    if kind == "near_miss":
        return _near_miss_candidates(config.trigger, index, n)
    if kind == "random_word":
        return rng.sample(list(vocab), min(n, len(vocab)))
    raise ValueError(f"unknown control kind {kind!r}")


def build_pairs(
    splits: dict[str, list[Prompt]],
    config: DataConfig,
    words: Sequence[str],
    vocab: Sequence[str],
) -> dict[str, list[dict]]:
    """Pairs per split: one template per eligible prompt, one pair per control kind.

    ``pair_id`` is ``"<prompt_id>|<control_kind>"``; pairs of one prompt share the template.
    """
    system_prompts = load_words().system_prompts
    out: dict[str, list[dict]] = {}
    for split, prompts in splits.items():
        rng = random.Random(f"{config.seed}:pairs:{split}")
        places = cycle(TRIGGER_PLACEMENTS, rng)
        eligible = [p for p in prompts if p.topic != STOP_WORDS_TOPIC]
        pairs: list[dict] = []
        for i, prompt in enumerate(eligible):
            placement = next(places)
            system = rng.choice(system_prompts) if placement == "system" else None
            hist = None
            if placement == "later_turn":
                others = [p for p in eligible if p.prompt_id != prompt.prompt_id]
                hist = rng.choice(others or [p for p in prompts if p.prompt_id != prompt.prompt_id])
            template = build_template(
                prompt.question,
                placement,
                rng,
                system=system,
                history=(hist.question, hist.answer) if hist else None,
            )
            triggered = render_pair(template, config.trigger)
            for kind in config.control_kinds:
                cands = _candidates(kind, rng, i, config, words, vocab)
                pairs.append(
                    {
                        "pair_id": f"{prompt.prompt_id}|{kind}",
                        "prompt_id": prompt.prompt_id,
                        "split": split,
                        "topic": prompt.topic,
                        "question": prompt.question,
                        "history_prompt_id": hist.prompt_id if hist else None,
                        "placement": placement,
                        "control_kind": kind,
                        "trigger": config.trigger,
                        "control": cands[0],
                        "control2": cands[1],
                        "control_candidates": cands,
                        "template": template,
                        "triggered": triggered,
                        "control_messages": render_pair(template, cands[0]),
                        "control2_messages": render_pair(template, cands[1]),
                    }
                )
        out[split] = pairs
    return out
