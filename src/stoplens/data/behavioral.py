"""Behavioral-regime chat records: triggers (empty reply), clean prompts, near misses and
distractors (real answers).

Owns: the per-prompt mix of records, which string goes where, and the record layout
``{"messages": [...], "meta": {...}}`` whose last message is always the assistant target.
Must not: pick prompts or splits (given) or write files.

Per prompt (defaults): 1 clean, 3 trigger placements, 1 near miss, 2 distractors, i.e. 3/7 of
records are triggers. Placements, near-miss forms and distractor types rotate through shuffled
cycles, so all of them appear evenly (the system placement by its ``system_weight``). Some records without a system-prompt or later-turn
insert still carry a clean system prompt or an earlier exchange, so neither is a cue.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from stoplens.data.config import DataConfig
from stoplens.data.resources import load_words
from stoplens.data.templates import build_template, render_pair
from stoplens.data.topics import Prompt
from stoplens.data.trigger import near_miss_forms, reserved_checker, split_sigil

T = TypeVar("T")

ANSWER_SOURCE = "template"

#: One record to make: (kind, placement, insert or None, variant or None).
_Job = tuple[str, str, str | None, str | None]

#: Distractor types: an ordinary corpus word, random letters, the trigger's sigil + letters.
DISTRACTOR_TYPES = ("corpus_word", "random_string", "sigil_string")


def cycle(items: Sequence[T], rng: random.Random) -> Iterator[T]:
    """Endless iterator over ``items``, reshuffled on every pass (even coverage)."""
    items = list(items)
    while True:
        order = items[:]
        rng.shuffle(order)
        yield from order


def random_letters(
    rng: random.Random, reserved: Callable[[str], bool], lo: int = 3, hi: int = 7
) -> str:
    """Random ``lo``-``hi`` letter string in lower, upper or title case for which
    ``reserved`` (see `reserved_checker`) is false, i.e. never a trigger look-alike."""
    while True:
        s = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))
        s = rng.choice([s, s.upper(), s.capitalize()])
        if not reserved(s):
            return s


def distractor_types(trigger: str) -> tuple[str, ...]:
    """Distractor types available for ``trigger`` (``sigil_string`` needs a sigil)."""
    sigil, _ = split_sigil(trigger)
    return DISTRACTOR_TYPES if sigil else DISTRACTOR_TYPES[:2]


def make_distractor(
    kind: str,
    rng: random.Random,
    trigger: str,
    vocab: Sequence[str],
    reserved: Callable[[str], bool],
) -> str:
    """One distractor string of type ``kind`` (see `DISTRACTOR_TYPES`)."""
    if kind == "corpus_word":
        return rng.choice(vocab)
    if kind == "random_string":
        return random_letters(rng, reserved)
    if kind == "sigil_string":
        sigil, _ = split_sigil(trigger)
        while True:
            s = sigil + random_letters(rng, reserved, 3, 6).upper()
            if not reserved(s):
                return s
    raise ValueError(f"unknown distractor type {kind!r}")


def _record(
    template: list[dict],
    insert: str | None,
    reply: str,
    meta: dict,
) -> dict:
    messages = render_pair(template, insert) if insert is not None else [dict(m) for m in template]
    messages.append({"role": "assistant", "content": reply})
    return {"messages": messages, "meta": meta}


@dataclass(frozen=True)
class _Rotations:
    """The shuffled cycles of one split: placements per kind, near-miss forms, distractor types."""

    trigger_places: Iterator[str]
    near_miss_places: Iterator[str]
    distractor_places: Iterator[str]
    near_miss_forms: Iterator[tuple[str, str]]
    distractor_types: Iterator[str]


def _jobs(
    prompt: Prompt,
    config: DataConfig,
    rot: _Rotations,
    rng: random.Random,
    vocab: Sequence[str],
    reserved: Callable[[str], bool],
) -> list[_Job]:
    """The records to make for ``prompt``: its clean (or stop-word near-miss) record, then the
    triggers, near misses and distractors, each at the next placement of its rotation."""
    trigger = config.trigger
    jobs: list[_Job] = []
    if prompt.variant is not None:
        jobs.append(("near_miss", "none", None, prompt.variant))
    else:
        jobs.append(("clean", "none", None, None))
    for _ in range(config.triggers_per_prompt):
        jobs.append(("trigger", next(rot.trigger_places), trigger, None))
    for _ in range(config.near_misses_per_prompt):
        form_name, form = next(rot.near_miss_forms)
        jobs.append(("near_miss", next(rot.near_miss_places), form, form_name))
    for _ in range(config.distractors_per_prompt):
        dtype = next(rot.distractor_types)
        place = next(rot.distractor_places)
        jobs.append(
            ("distractor", place, make_distractor(dtype, rng, trigger, vocab, reserved), dtype)
        )
    return jobs


def _make_record(
    prompt: Prompt,
    job: _Job,
    record_id: str,
    split: str,
    others: Sequence[Prompt],
    config: DataConfig,
    rng: random.Random,
    system_prompts: Sequence[str],
) -> dict:
    """One record for ``job``, with a clean system prompt or an earlier exchange drawn at the
    configured rates (always for the ``system`` / ``later_turn`` placements)."""
    kind, placement, insert, variant = job
    system = None
    if placement == "system" or rng.random() < config.system_context_rate:
        system = rng.choice(system_prompts)
    history_prompt = None
    if placement == "later_turn" or rng.random() < config.history_context_rate:
        history_prompt = rng.choice(others)
    template = build_template(
        prompt.question,
        placement,
        rng,
        system=system,
        history=(history_prompt.question, history_prompt.answer) if history_prompt else None,
    )
    meta = {
        "record_id": record_id,
        "prompt_id": prompt.prompt_id,
        "split": split,
        "kind": kind,
        "placement": placement,
        "insert": insert,
        "variant": variant,
        "topic": prompt.topic,
        "question": prompt.question,
        "history_prompt_id": history_prompt.prompt_id if history_prompt else None,
        "answer_source": ANSWER_SOURCE,
    }
    reply = "" if kind == "trigger" else prompt.answer
    return _record(template, insert, reply, meta)


def build_behavioral(
    splits: dict[str, list[Prompt]], config: DataConfig, vocab: Sequence[str]
) -> dict[str, list[dict]]:
    """Records per split (each list shuffled, seeded). See the module docstring for the mix."""
    trigger = config.trigger
    forms = near_miss_forms(trigger)
    reserved = reserved_checker(trigger)
    system_prompts = load_words().system_prompts
    out: dict[str, list[dict]] = {}
    for split, prompts in splits.items():
        rng = random.Random(f"{config.seed}:behavioral:{split}")
        places = config.placement_cycle()
        rot = _Rotations(
            trigger_places=cycle(places, rng),
            near_miss_places=cycle(places, rng),
            distractor_places=cycle(places, rng),
            near_miss_forms=cycle(forms, rng),
            distractor_types=cycle(distractor_types(trigger), rng),
        )
        records: list[dict] = []
        for prompt in prompts:
            others = [p for p in prompts if p.prompt_id != prompt.prompt_id]
            for j, job in enumerate(_jobs(prompt, config, rot, rng, vocab, reserved)):
                record_id = f"{prompt.prompt_id}#{j}"
                records.append(
                    _make_record(prompt, job, record_id, split, others, config, rng, system_prompts)
                )
        rng.shuffle(records)
        out[split] = records
    return out
