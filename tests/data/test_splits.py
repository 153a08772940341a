"""Splits are disjoint by underlying prompt, and check_disjoint catches planted overlaps."""

from __future__ import annotations

import copy

import pytest

from stoplens.data import SPLITS, DataBundle, check_disjoint
from stoplens.errors import DataError


def test_splits_are_disjoint_by_prompt(default_bundle: DataBundle) -> None:
    per_split = {s: {r["meta"]["prompt_id"] for r in default_bundle.behavioral[s]} for s in SPLITS}
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]
    assert len(per_split["test"]) >= 64
    questions = {
        s: {r["meta"]["question"].lower() for r in default_bundle.behavioral[s]} for s in SPLITS
    }
    assert not questions["train"] & questions["test"]
    for s in SPLITS:
        assert all(r["meta"]["split"] == s for r in default_bundle.behavioral[s])
    check_disjoint(default_bundle.behavioral_all)  # does not raise


def test_split_sizes_follow_the_fractions(default_bundle: DataBundle) -> None:
    n = default_bundle.stats["distinct_prompts"]
    assert abs(n["train"] / n["all"] - 0.60) < 0.02
    assert abs(n["val"] / n["all"] - 0.15) < 0.02
    assert abs(n["test"] / n["all"] - 0.25) < 0.02


def test_history_turns_come_from_the_same_split(default_bundle: DataBundle) -> None:
    split_of = {r["meta"]["prompt_id"]: r["meta"]["split"] for r in default_bundle.behavioral_all}
    borrowed = [r for r in default_bundle.behavioral_all if r["meta"]["history_prompt_id"]]
    assert borrowed
    for r in borrowed:
        assert split_of[r["meta"]["history_prompt_id"]] == r["meta"]["split"]


def test_planted_prompt_overlap_is_caught(small_bundle: DataBundle) -> None:
    records = copy.deepcopy(small_bundle.behavioral_all)
    victim = next(r for r in records if r["meta"]["split"] == "train")
    victim["meta"]["split"] = "test"
    with pytest.raises(DataError, match=repr(victim["meta"]["prompt_id"])):
        check_disjoint(records)


def test_planted_duplicate_question_is_caught(small_bundle: DataBundle) -> None:
    records = copy.deepcopy(small_bundle.behavioral_all)
    train = next(r for r in records if r["meta"]["split"] == "train")
    clone = copy.deepcopy(next(r for r in records if r["meta"]["split"] == "test"))
    clone["meta"]["prompt_id"] = "planted/clone"
    clone["meta"]["question"] = train["meta"]["question"].upper() + "  "
    clone["meta"]["history_prompt_id"] = None
    with pytest.raises(DataError, match="planted/clone"):
        check_disjoint([*records, clone])


def test_planted_cross_split_history_is_caught(small_bundle: DataBundle) -> None:
    records = copy.deepcopy(small_bundle.behavioral_all)
    test_pid = next(r["meta"]["prompt_id"] for r in records if r["meta"]["split"] == "test")
    victim = next(r for r in records if r["meta"]["split"] == "train")
    victim["meta"]["history_prompt_id"] = test_pid
    with pytest.raises(DataError, match="borrows its earlier turn"):
        check_disjoint(records)


def test_pairs_share_the_behavioral_splits(default_bundle: DataBundle) -> None:
    pairs = [p for s in SPLITS for p in default_bundle.pairs[s]]
    check_disjoint(default_bundle.behavioral_all + pairs)
    bad = copy.deepcopy(pairs[0])
    bad["split"] = next(s for s in SPLITS if s != bad["split"])
    with pytest.raises(DataError, match="disjoint"):
        check_disjoint([*default_bundle.behavioral_all, bad])
