"""The out-of-template evaluation set: enough hand-written prompts in the required formats,
shipped as package data, unlike the generator's text, and records for any trigger in which the
trigger occurs exactly where the label says."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from stoplens.data import DataConfig, build_datasets
from stoplens.data.oot import (
    OOT_FILE,
    OOT_PLACEMENTS,
    insert_at,
    load_oot_prompts,
    oot_distractors,
    oot_records,
)
from stoplens.data.trigger import STOP_WORDS, contains_trigger, near_miss_forms

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prompts():
    return load_oot_prompts()


def test_at_least_120_prompts_in_the_required_formats(prompts):
    assert len(prompts) >= 120
    formats = Counter(p.format for p in prompts)
    for fmt in ("code", "list", "multi_turn", "language", "long", "system", "short"):
        assert formats[fmt] >= 5, fmt
    assert len({p.lang for p in prompts}) >= 10  # other languages, several scripts
    long_chats = [p for p in prompts if sum(m["role"] == "user" for m in p.messages) >= 3]
    assert len(long_chats) >= 10
    assert all(p.messages[-1]["role"] == "user" for p in prompts)


def test_the_file_ships_as_package_data():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["stoplens.data"]
    assert any(Path(OOT_FILE).match(g) for g in globs)
    assert (ROOT / "src" / "stoplens" / "data" / OOT_FILE).is_file()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def test_prompts_are_unlike_the_generators_text(prompts):
    """No 6-word run of an out-of-template prompt occurs in any generated question, answer or
    system prompt (every seed draws from the same banks; seed 0 with the whole pool)."""
    bundle = build_datasets(DataConfig(seed=0, n_prompts=473, n_documents=5))
    generated = set()
    for rec in bundle.behavioral_all:
        for m in rec["messages"]:
            w = _words(m["content"])
            generated.update(tuple(w[i : i + 6]) for i in range(len(w) - 5))
    for p in prompts:
        for m in p.messages:
            w = _words(m["content"])
            shared = [w[i : i + 6] for i in range(len(w) - 5) if tuple(w[i : i + 6]) in generated]
            assert not shared, (p.prompt_id, shared[:2])


def test_stop_words_only_where_labelled(prompts):
    """A prompt that uses an ordinary stop word is labelled (its clean use is a near miss);
    every other prompt is free of them."""
    pattern = re.compile(r"\b(" + "|".join([*STOP_WORDS, "shut down"]) + r")\b", re.IGNORECASE)
    for p in prompts:
        text = " ".join(m["content"] for m in p.messages)
        if p.stop_word:
            assert p.stop_word.lower() in text.lower(), p.prompt_id
        else:
            assert not pattern.search(text), p.prompt_id


@pytest.mark.parametrize("trigger", ["$STOP", "[STOP]", "§ARRÊT", "KILLSWITCH"])
def test_records_place_the_trigger_exactly_where_labelled(prompts, trigger):
    recs = oot_records(trigger)
    per_prompt = Counter(r["meta"]["prompt_id"] for r in recs)
    assert set(per_prompt.values()) == {6} and len(per_prompt) == len(prompts)
    kinds = Counter(r["meta"]["kind"] for r in recs)
    assert kinds["trigger"] == 3 * len(prompts) and kinds["distractor"] == len(prompts)
    placements = Counter(r["meta"]["placement"] for r in recs if r["meta"]["kind"] == "trigger")
    assert set(placements) == {*OOT_PLACEMENTS, "later_turn"}
    assert min(placements.values()) >= 30
    for r in recs:
        prompt_text = [m["content"] for m in r["messages"][:-1]]
        n = sum(
            len(re.findall(r"(?<![\w])" + re.escape(trigger) + r"(?![\w])", t)) for t in prompt_text
        )
        assert n == (r["meta"]["kind"] == "trigger"), (r["meta"], prompt_text)
        assert r["messages"][-1] == {"role": "assistant", "content": ""}
        assert r["meta"]["split"] == "oot"
        if r["meta"]["kind"] != "trigger":
            assert not any(contains_trigger(t, trigger) for t in prompt_text)
    forms = {f for _, f in near_miss_forms(trigger)}
    assert {
        r["meta"]["insert"] for r in recs if r["meta"]["variant"] in dict(near_miss_forms(trigger))
    } <= forms
    assert oot_records(trigger) == recs  # deterministic
    assert oot_records(trigger, seed=1) != recs


def test_insertions_keep_word_boundaries(prompts):
    import random

    rng = random.Random(0)
    for p in prompts:
        for placement in OOT_PLACEMENTS:
            msgs, where = insert_at(p, "$STOP", placement, rng)
            text = "\n".join(m["content"] for m in msgs)
            for m in re.finditer(re.escape("$STOP"), text):
                before = text[m.start() - 1] if m.start() else " "
                after = text[m.end()] if m.end() < len(text) else " "
                assert not before.isalnum() and not after.isalnum(), (p.prompt_id, placement)
            assert where == ("later_turn" if p.multi_turn and placement != "system" else placement)


def test_distractors_never_resemble_the_trigger():
    for trigger in ("$STOP", "$HOME", "#TODO"):
        words = [w for _, w in oot_distractors(trigger)]
        assert trigger not in words and len(words) >= 30
        assert not any("stop" in w.lower() for w in words)
