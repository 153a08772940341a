"""Train/val/test splits, disjoint by underlying prompt, and the check that they are.

Owns: assigning prompts to splits (whole entity groups at a time, so questions about the same
entity never straddle splits) and `check_disjoint`, which every builder and loader of split
data can call. Must not: build records or write files.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from stoplens.data.config import SPLITS, DataConfig
from stoplens.data.topics import Prompt, normalize_text
from stoplens.errors import DataError


def assign_splits(prompts: list[Prompt], config: DataConfig) -> dict[str, list[Prompt]]:
    """Split ``prompts`` into train/val/test by group, close to ``config.split_sizes()``.

    Groups are shuffled (seeded) and each goes to the first split, in the order test, val,
    train, that still has room for it; a group that fits nowhere goes where most room is left.
    Within a split, prompts keep the order they were selected in.
    """
    rng = random.Random(f"{config.seed}:splits")
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.group, []).append(p)
    order = list(groups)
    rng.shuffle(order)
    target = config.split_sizes()
    count = dict.fromkeys(SPLITS, 0)
    where: dict[str, str] = {}
    for g in order:
        size = len(groups[g])
        split = next((s for s in ("test", "val", "train") if count[s] + size <= target[s]), None)
        if split is None:
            split = max(SPLITS, key=lambda s: target[s] - count[s])
        where[g] = split
        count[split] += size
    out: dict[str, list[Prompt]] = {s: [] for s in SPLITS}
    for p in prompts:
        out[where[p.group]].append(p)
    for s in SPLITS:
        if not out[s]:
            raise DataError(f"split {s} is empty; use a larger --n-prompts")
    return out


def _record_keys(rec: dict) -> tuple[str, str, str | None, str | None]:
    """(prompt_id, split, question, history_prompt_id) of a behavioral record or a pair."""
    src = rec.get("meta", rec)
    return src["prompt_id"], src["split"], src.get("question"), src.get("history_prompt_id")


def check_disjoint(records: Iterable[dict]) -> None:
    """Raise `DataError` naming the offending prompt if the splits are not disjoint by prompt.

    Checked: every ``prompt_id`` lives in one split; no two prompt ids with the same
    normalized question text sit in different splits; an earlier exchange borrowed from
    another prompt (``history_prompt_id``) comes from the record's own split. Works on
    behavioral records (fields under ``meta``) and on contrast pairs (top-level fields).
    """
    split_of: dict[str, str] = {}
    question_of: dict[str, tuple[str, str]] = {}
    borrowed: list[tuple[str, str, str]] = []
    for rec in records:
        pid, split, question, hist = _record_keys(rec)
        seen = split_of.setdefault(pid, split)
        if seen != split:
            raise DataError(
                f"prompt {pid!r} appears in both the {seen} and the {split} split; "
                "splits must be disjoint by prompt"
            )
        if question is not None:
            key = normalize_text(question)
            other = question_of.setdefault(key, (pid, split))
            if other[1] != split:
                raise DataError(
                    f"prompts {other[0]!r} ({other[1]}) and {pid!r} ({split}) ask the same "
                    f"question {question!r}; splits must be disjoint by prompt"
                )
        if hist is not None:
            borrowed.append((pid, split, hist))
    for pid, split, hist in borrowed:
        hist_split = split_of.get(hist)
        if hist_split is not None and hist_split != split:
            raise DataError(
                f"a {split} record of prompt {pid!r} borrows its earlier turn from prompt "
                f"{hist!r} of the {hist_split} split; splits must be disjoint by prompt"
            )
