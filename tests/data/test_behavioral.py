"""Behavioral records at the default sizes: schema, mix, placements, near misses, distractors."""

from __future__ import annotations

from collections import Counter

from stoplens.data import TRIGGER_PLACEMENTS, DataBundle, DataConfig, validate_behavioral
from stoplens.data.trigger import contains_trigger, near_miss_forms


def test_every_record_passes_the_schema(default_bundle: DataBundle) -> None:
    records = default_bundle.behavioral_all
    for rec in records:
        validate_behavioral(rec)
    assert len({r["meta"]["record_id"] for r in records}) == len(records)
    assert all(r["meta"]["answer_source"] == "template" for r in records)


def test_mix_and_size(default_bundle: DataBundle) -> None:
    records = default_bundle.behavioral_all
    kinds = Counter(r["meta"]["kind"] for r in records)
    assert set(kinds) == {"trigger", "clean", "near_miss", "distractor"}
    cfg = DataConfig()
    per_prompt = (
        1 + cfg.triggers_per_prompt + cfg.near_misses_per_prompt + cfg.distractors_per_prompt
    )
    assert len(records) == cfg.n_prompts * per_prompt
    assert kinds["trigger"] == cfg.n_prompts * cfg.triggers_per_prompt


def test_targets_empty_exactly_for_triggers(default_bundle: DataBundle) -> None:
    for rec in default_bundle.behavioral_all:
        last = rec["messages"][-1]
        prompt_text = [m["content"] for m in rec["messages"][:-1]]
        assert last["role"] == "assistant"
        if rec["meta"]["kind"] == "trigger":
            assert last["content"] == ""
            assert sum(contains_trigger(t, "$STOP") for t in prompt_text) == 1
        else:
            assert 8 <= len(last["content"].split()) <= 60
            assert not any(contains_trigger(t, "$STOP") for t in prompt_text)


def test_all_six_trigger_placements_and_their_shape(default_bundle: DataBundle) -> None:
    triggers = [r for r in default_bundle.behavioral_all if r["meta"]["kind"] == "trigger"]
    assert Counter(r["meta"]["placement"] for r in triggers).keys() == set(TRIGGER_PLACEMENTS)
    for rec in triggers:
        msgs, placement = rec["messages"], rec["meta"]["placement"]
        holder = next(m for m in msgs if contains_trigger(m["content"], "$STOP"))
        if placement == "system":
            assert holder is msgs[0] and holder["role"] == "system"
        elif placement == "later_turn":
            users = [m for m in msgs if m["role"] == "user"]
            assert len(users) >= 2 and holder is users[-1]
            assert any(m["role"] == "assistant" and m["content"] for m in msgs[:-1])
            assert rec["meta"]["history_prompt_id"] not in (None, rec["meta"]["prompt_id"])
        else:
            assert holder is msgs[-2] and holder["role"] == "user"
            content = holder["content"]
            if placement == "prefix":
                assert content.startswith("$STOP ")
            elif placement == "suffix":
                assert content.endswith(" $STOP")
            elif placement == "own_line":
                assert "$STOP" in content.split("\n")
            elif placement == "middle":
                assert not content.startswith("$STOP") and not content.endswith("$STOP")


def test_near_misses_are_the_six_forms_and_stop_words(default_bundle: DataBundle) -> None:
    near = [r for r in default_bundle.behavioral_all if r["meta"]["kind"] == "near_miss"]
    inserts = {r["meta"]["insert"] for r in near if r["meta"]["insert"] is not None}
    assert inserts == {"STOP", "stop", "$stop", "$ STOP", "$STOPS", "$TOP"}
    assert {f for _, f in near_miss_forms("$STOP")} == inserts
    words = {r["meta"]["variant"] for r in near if r["meta"]["insert"] is None}
    assert words == {"word:stop", "word:shutdown", "word:halt"}
    placements = {r["meta"]["placement"] for r in near if r["meta"]["insert"] is not None}
    assert placements == set(TRIGGER_PLACEMENTS)


def test_distractors_cover_placements_and_types(default_bundle: DataBundle) -> None:
    dis = [r for r in default_bundle.behavioral_all if r["meta"]["kind"] == "distractor"]
    assert {r["meta"]["placement"] for r in dis} == set(TRIGGER_PLACEMENTS)
    assert {r["meta"]["variant"] for r in dis} == {"corpus_word", "random_string", "sigil_string"}
    inserts = [r["meta"]["insert"] for r in dis]
    assert len(set(inserts)) > 0.5 * len(inserts)  # not a small fixed list
    randoms = [r["meta"]["insert"] for r in dis if r["meta"]["variant"] == "random_string"]
    assert all(s.isalpha() and 3 <= len(s) <= 7 for s in randoms)


def test_context_is_never_a_cue(default_bundle: DataBundle) -> None:
    """Clean records also carry system prompts and earlier turns sometimes."""
    clean = [r for r in default_bundle.behavioral_all if r["meta"]["kind"] == "clean"]
    with_system = sum(r["messages"][0]["role"] == "system" for r in clean)
    with_history = sum(sum(m["role"] == "user" for m in r["messages"]) > 1 for r in clean)
    assert 0.1 < with_system / len(clean) < 0.5
    assert 0.05 < with_history / len(clean) < 0.4


def test_many_distinct_prompts_answers_and_topics(default_bundle: DataBundle) -> None:
    stats = default_bundle.stats
    records = default_bundle.behavioral_all
    assert stats["distinct_prompts"]["all"] == len({r["meta"]["prompt_id"] for r in records}) >= 300
    assert stats["distinct_answers"] >= 300
    assert stats["distinct_questions"] >= 300
    assert len(stats["topics"]) >= 15
    assert stats["diversity"]["answers_5gram_ratio"] > 0.8


def test_system_weight_shifts_every_kind_towards_the_system_prompt() -> None:
    """The hardest placement can get more of the data, for triggers and negatives alike (so a
    system-prompt insert is never a cue by itself)."""
    import pytest

    from stoplens.data import DataConfig, build_datasets
    from stoplens.errors import DataError

    records = build_datasets(DataConfig(system_weight=3, n_documents=5)).behavioral["train"]
    for kind in ("trigger", "near_miss", "distractor"):
        places = Counter(r["meta"]["placement"] for r in records if r["meta"]["kind"] == kind)
        places.pop("none", None)
        share = places["system"] / sum(places.values())
        assert abs(share - 3 / 8) < 0.04, (kind, share)
    assert DataConfig(system_weight=1).placement_cycle() == TRIGGER_PLACEMENTS
    assert DataConfig().placement_cycle().count("system") == 2
    with pytest.raises(DataError, match="system_weight"):
        DataConfig(system_weight=0).validate()
