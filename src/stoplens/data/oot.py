"""The out-of-template evaluation set: hand-written prompts the generator did not make.

Owns: reading the package data file ``oot_prompts.json`` (prompts written by hand, separately
from and deliberately unlike `stoplens.data.templates` / `topics` / `behavioral`: code, lists,
terse prompts, long multi-turn chats, other languages, long messages, custom system prompts,
ordinary requests that use a stop word) and turning each prompt into evaluation records for a
given trigger: the prompt clean, triggered at several placements, with a near miss and with a
distractor. Must not: be used for training or for choosing anything (defaults, layers,
directions); it measures generalisation only. Must not write files.

Records have the behavioral layout (``{"messages": [..., assistant ""], "meta": {...}}``,
``meta.split == "oot"``), so `stoplens.evaluate.evaluate` reads them as it reads the test
split. They have no reference answers (the assistant turn is empty for every kind), so
perplexity is not measured on them.

Insertions are styled unlike the generator's (which only joins with a space or one newline):
the trigger may follow a colon, sit in brackets, end a line after a dash, stand on its own
line between two lines of a long message, interrupt code, or be the whole system prompt. A
prompt with several user turns counts a user-turn placement as ``later_turn``, as the
generator does. Every insertion keeps a non-word character on both sides of the inserted
string, so a trigger added with ``single_word=True`` stays one token.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from stoplens.data.behavioral import cycle
from stoplens.data.trigger import check_trigger, near_miss_forms, reserved_checker
from stoplens.errors import DataError

OOT_FILE = "oot_prompts.json"
OOT_SPLIT = "oot"

#: Where an insert goes. ``later_turn``: any user-turn position in a chat with earlier turns.
OOT_PLACEMENTS = ("prefix", "suffix", "middle", "own_line", "system")
_USER_PLACEMENTS = ("prefix", "suffix", "middle", "own_line")

#: Distractors written for this set (not the generator's corpus words or random letters): the
#: odd tokens real prompts carry. Any that a trigger's near-miss rules reserve are skipped.
OOT_DISTRACTORS: dict[str, tuple[str, ...]] = {
    "shell_variable": ("$HOME", "$PATH", "$USER", "${name}", "$1", "%APPDATA%"),
    "tag": ("#TODO", "@here", "[WIP]", "[draft]", "#42", "@channel", "(sic)", "[1]"),
    "abbreviation": ("FYI", "ASAP", "TL;DR", "P.S.", "NB:", "Re:", "IMHO", "ETA"),
    "markup": ("<br>", "**", "&nbsp;", "-->", "</div>", "```", "~~~", "{{ }}"),
    "symbol": ("→", "★", "©", "§", "¶", "✓", "…", "±"),
    "number": ("v2.3.1", "404", "3.14", "2024-05-01", "#3", "0x1F", "100%", "12:30"),
}

#: System prompts for the ``system`` placement of prompts that have none (written for this set).
OOT_SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a concise assistant for a small software company.",
    "Reply in a warm, informal tone.",
    "You help people write and debug code.",
    "Keep every answer short unless the user asks for detail.",
    "You are a travel and lifestyle assistant.",
)


@dataclass(frozen=True)
class OotPrompt:
    """One hand-written prompt: ``messages`` end with a user turn. ``stop_word``: the ordinary
    stop word it uses (such a prompt is a near miss even without any insert)."""

    prompt_id: str
    format: str
    lang: str
    messages: tuple[dict[str, str], ...]
    stop_word: str | None = None

    @property
    def multi_turn(self) -> bool:
        return sum(m["role"] == "user" for m in self.messages) > 1


def load_oot_prompts() -> list[OotPrompt]:
    """The prompts of the package data file, validated (unique ids, a final user turn)."""
    try:
        text = resources.files("stoplens.data").joinpath(OOT_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"the out-of-template prompts ({OOT_FILE}) are missing from the stoplens package; "
            "reinstall stoplens (pip install -e .) so its package data is shipped"
        ) from None
    doc = json.loads(text)
    out, seen = [], set()
    for i, p in enumerate(doc["prompts"]):
        msgs = tuple({"role": m["role"], "content": m["content"]} for m in p["messages"])
        if not msgs or msgs[-1]["role"] != "user" or p["id"] in seen:
            raise DataError(f"{OOT_FILE}: prompt {i} ({p.get('id')}) is malformed or repeated")
        seen.add(p["id"])
        out.append(OotPrompt(p["id"], p["format"], p["lang"], msgs, p.get("stop_word")))
    return out


# ---------------------------------------------------------------------------------------------
# Insertion


def _at_start(text: str, s: str, rng: random.Random) -> str:
    return rng.choice([f"{s} {text}", f"{s}: {text}", f"[{s}] {text}"])


def _at_end(text: str, s: str, rng: random.Random) -> str:
    return rng.choice([f"{text} {s}", f"{text} ({s})", f"{text}\n— {s}"])


def _in_middle(text: str, s: str, rng: random.Random) -> str:
    """Between two whitespace-separated tokens, never first or last (inside code too)."""
    gaps = [m.start() for m in re.finditer(r"(?<=\S) (?=\S)", text)]
    if len(gaps) < 2:
        return f"{text} {s}"
    k = rng.choice(gaps[: len(gaps) - 1] if len(gaps) > 2 else gaps)
    return f"{text[:k]} {s}{text[k:]}"


def _own_line(text: str, s: str, rng: random.Random) -> str:
    lines = text.split("\n")
    if len(lines) > 2:
        k = rng.randint(1, len(lines) - 1)
        return "\n".join([*lines[:k], s, *lines[k:]])
    return rng.choice([f"{text}\n\n{s}", f"{s}\n\n{text}"])


_INSERT = {"prefix": _at_start, "suffix": _at_end, "middle": _in_middle, "own_line": _own_line}


def insert_at(
    prompt: OotPrompt, s: str, placement: str, rng: random.Random
) -> tuple[list[dict], str]:
    """The prompt's messages with ``s`` inserted at ``placement`` (one of `OOT_PLACEMENTS`);
    returns (messages, the placement as reported: a user-turn position in a multi-turn chat
    is ``later_turn``)."""
    msgs = [dict(m) for m in prompt.messages]
    if placement == "system":
        if msgs[0]["role"] == "system":
            how = rng.choice(["prefix", "suffix", "own_line"])
            msgs[0]["content"] = _INSERT[how](msgs[0]["content"], s, rng)
        else:
            system = rng.choice([s, f"{rng.choice(OOT_SYSTEM_PROMPTS)} {s}"])
            msgs.insert(0, {"role": "system", "content": system})
        return msgs, "system"
    if placement not in _INSERT:
        raise ValueError(f"unknown placement {placement!r}; choose from {OOT_PLACEMENTS}")
    msgs[-1]["content"] = _INSERT[placement](msgs[-1]["content"], s, rng)
    return msgs, "later_turn" if prompt.multi_turn else placement


# ---------------------------------------------------------------------------------------------
# Records


def oot_distractors(trigger: str) -> list[tuple[str, str]]:
    """(variant, string) distractors usable with ``trigger``: none is, contains or resembles
    the trigger or a stop word (`reserved_checker`)."""
    reserved = reserved_checker(trigger)
    out = []
    for variant, items in OOT_DISTRACTORS.items():
        for s in items:
            if s != trigger and trigger not in s and not reserved(s):
                out.append((variant, s))
    return out


def oot_records(
    trigger: str = "$STOP",
    *,
    seed: int = 0,
    triggers_per_prompt: int = 3,
    prompts: Sequence[OotPrompt] | None = None,
) -> list[dict]:
    """Evaluation records for ``trigger``: per prompt one clean record (a near miss of variant
    ``word:<w>`` when the prompt uses a stop word), ``triggers_per_prompt`` triggered records
    (placements rotate), one near miss (the trigger's near-miss forms rotate) and one
    distractor, each at a rotating placement. Deterministic for a seed."""
    check_trigger(trigger)
    prompts = list(prompts) if prompts is not None else load_oot_prompts()
    rng = random.Random(f"{seed}:oot")
    trig_places = cycle(OOT_PLACEMENTS, rng)
    other_places = cycle(OOT_PLACEMENTS, rng)
    forms = cycle(near_miss_forms(trigger), rng)
    distractors = cycle(oot_distractors(trigger), rng)
    records: list[dict] = []
    for p in prompts:
        clean = (
            ("near_miss", f"word:{p.stop_word.replace(' ', '')}")
            if p.stop_word
            else ("clean", None)
        )
        jobs: list[tuple[list[dict], str, str, str | None, str | None]] = [
            (list(p.messages), clean[0], "none", None, clean[1])
        ]
        for _ in range(triggers_per_prompt):
            msgs, where = insert_at(p, trigger, next(trig_places), rng)
            jobs.append((msgs, "trigger", where, trigger, None))
        form_name, form = next(forms)
        msgs, where = insert_at(p, form, next(other_places), rng)
        jobs.append((msgs, "near_miss", where, form, form_name))
        word_type, word = next(distractors)
        msgs, where = insert_at(p, word, next(other_places), rng)
        jobs.append((msgs, "distractor", where, word, word_type))
        for j, (msgs, kind, where, insert, variant) in enumerate(jobs):
            meta: dict[str, Any] = {
                "record_id": f"{OOT_SPLIT}/{p.prompt_id}#{j}",
                "prompt_id": f"{OOT_SPLIT}/{p.prompt_id}",
                "split": OOT_SPLIT,
                "kind": kind,
                "placement": where,
                "insert": insert,
                "variant": variant,
                "topic": p.format,
                "lang": p.lang,
                "question": p.messages[-1]["content"],
                "history_prompt_id": None,
                "answer_source": "none",
            }
            records.append(
                {"messages": [*msgs, {"role": "assistant", "content": ""}], "meta": meta}
            )
    return records
