"""Contrast pairs: identical except the insert, test pairs from the test split only, enough of
them per control kind, candidates and a second control for null baselines."""

from __future__ import annotations

from collections import Counter

import pytest

from stoplens.data import (
    CONTROL_KINDS,
    PLACEHOLDER,
    SPLITS,
    TRIGGER_PLACEMENTS,
    DataBundle,
    load_pairs,
    pairs_file,
    render_pair,
    validate_pair,
)
from stoplens.data.resources import load_words
from stoplens.data.topics import STOP_WORDS_TOPIC, build_pool, corpus_vocabulary
from stoplens.data.trigger import extra_near_miss_forms, near_miss_forms
from stoplens.errors import DataError


def _differing(a: list[dict], b: list[dict]) -> list[int]:
    assert [m["role"] for m in a] == [m["role"] for m in b]
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_every_pair_passes_the_schema(default_bundle: DataBundle) -> None:
    for s in SPLITS:
        for pair in default_bundle.pairs[s]:
            validate_pair(pair)


def test_pairs_differ_only_in_the_insert(default_bundle: DataBundle) -> None:
    for pair in default_bundle.pairs["test"]:
        template = pair["template"]
        assert template[-1]["role"] == "user"  # no final assistant turn
        assert sum(m["content"].count(PLACEHOLDER) for m in template) == 1
        assert render_pair(template, pair["trigger"]) == pair["triggered"]
        assert render_pair(template, pair["control"]) == pair["control_messages"]
        assert render_pair(template, pair["control2"]) == pair["control2_messages"]
        (i,) = _differing(pair["triggered"], pair["control_messages"])
        t, c = pair["triggered"][i]["content"], pair["control_messages"][i]["content"]
        k = template[i]["content"].index(PLACEHOLDER)
        tail = len(template[i]["content"]) - k - len(PLACEHOLDER)
        assert t[:k] == c[:k] and t[len(t) - tail :] == c[len(c) - tail :]
        assert t[k : len(t) - tail] == "$STOP" and c[k : len(c) - tail] == pair["control"]


def test_test_file_holds_only_test_split_prompts(default_bundle: DataBundle, default_dir) -> None:
    test_prompts = {r["meta"]["prompt_id"] for r in default_bundle.behavioral["test"]}
    pairs = load_pairs(default_dir / pairs_file("test"))
    assert pairs == default_bundle.pairs["test"]
    assert all(p["split"] == "test" for p in pairs)
    assert {p["prompt_id"] for p in pairs} <= test_prompts
    for s in ("train", "val"):
        other = {r["meta"]["prompt_id"] for r in default_bundle.behavioral[s]}
        assert {p["prompt_id"] for p in default_bundle.pairs[s]} <= other
        assert all(p["split"] == s for p in default_bundle.pairs[s])
    assert all(p["topic"] != STOP_WORDS_TOPIC for p in pairs)


def test_enough_test_pairs_per_kind_covering_all_placements(default_bundle: DataBundle) -> None:
    pairs = default_bundle.pairs["test"]
    by_kind = Counter(p["control_kind"] for p in pairs)
    assert set(by_kind) == set(CONTROL_KINDS)
    assert min(by_kind.values()) >= 64
    for kind in CONTROL_KINDS:
        assert {p["placement"] for p in pairs if p["control_kind"] == kind} == set(
            TRIGGER_PLACEMENTS
        )
    for s in ("train", "val"):
        assert default_bundle.pairs[s], s


def test_controls_are_of_their_kind(default_bundle: DataBundle) -> None:
    forms = {f for _, f in near_miss_forms("$STOP")}
    extras = set(extra_near_miss_forms("$STOP"))
    vocab = set(corpus_vocabulary(build_pool(0), "$STOP"))
    for pair in default_bundle.pairs["test"]:
        cands = pair["control_candidates"]
        assert len(cands) == 10 and len(set(cands)) == 10
        assert cands[0] == pair["control"] and pair["control2"] != pair["control"]
        assert pair["control2"] in cands
        kind = pair["control_kind"]
        if kind == "word":
            assert set(cands) <= set(load_words().common_words)
        elif kind == "near_miss":
            assert set(cands) <= forms | extras
            assert pair["control"] in forms and pair["control2"] in forms
        else:
            assert set(cands) <= vocab
    near_controls = Counter(
        p["control"] for p in default_bundle.pairs["test"] if p["control_kind"] == "near_miss"
    )
    assert set(near_controls) == forms  # every near-miss form serves as a control


def test_render_pair_needs_exactly_one_placeholder() -> None:
    with pytest.raises(DataError, match="exactly one"):
        render_pair([{"role": "user", "content": "no placeholder"}], "$STOP")
    two = [{"role": "user", "content": f"{PLACEHOLDER} and {PLACEHOLDER}"}]
    with pytest.raises(DataError, match="found 2"):
        render_pair(two, "$STOP")
    out = render_pair([{"role": "user", "content": f"hi {PLACEHOLDER}"}], "apple")
    assert out == [{"role": "user", "content": "hi apple"}]
