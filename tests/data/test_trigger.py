"""Near-miss forms are derived generically from the trigger; detection is token-exact."""

from __future__ import annotations

import pytest

from stoplens.data.trigger import contains_trigger, extra_near_miss_forms, near_miss_forms


def test_default_trigger_has_exactly_the_six_near_misses() -> None:
    forms = [f for _, f in near_miss_forms("$STOP")]
    assert forms == ["STOP", "stop", "$stop", "$ STOP", "$STOPS", "$TOP"]


@pytest.mark.parametrize("trigger", ["#HALT", "kill", "$Abort", "Q9x"])
def test_forms_are_generic_distinct_and_never_the_trigger(trigger: str) -> None:
    forms = [f for _, f in near_miss_forms(trigger)]
    assert forms, trigger
    assert len(set(forms)) == len(forms)
    assert trigger not in forms
    assert all(not contains_trigger(f, trigger) for f in forms)
    extras = extra_near_miss_forms(trigger)
    assert not set(extras) & {trigger, *forms}


def test_halt_trigger_derivations() -> None:
    assert [f for _, f in near_miss_forms("#HALT")] == [
        "HALT",
        "halt",
        "#halt",
        "# HALT",
        "#HALTS",
        "#ALT",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a $STOP b", True),
        ("$STOP", True),
        ("end.\n$STOP", True),
        ("Why? $STOP.", True),
        ("a $STOPS b", False),
        ("a $stop b", False),
        ("a $ STOP b", False),
        ("STOP now", False),
        ("x$STOPx", False),
    ],
)
def test_contains_trigger_is_token_exact(text: str, expected: bool) -> None:
    assert contains_trigger(text, "$STOP") is expected


ODD_TRIGGERS = ("$STOP", "<<STOP>>", "<|halt|>", "[STOP]", "§STOP", "⏹", "<<INSERT>>")


@pytest.mark.parametrize("trigger", ODD_TRIGGERS)
def test_any_single_word_trigger_builds_valid_data(trigger: str, tmp_path) -> None:
    """The template placeholder is a noncharacter sentinel, so triggers that look like a
    placeholder or a chat token work: records and pairs validate, the trigger appears exactly
    where a trigger record or pair puts it, and never in a negative."""
    from stoplens.data import (
        PLACEHOLDER,
        DataConfig,
        build_datasets,
        load_behavioral,
        load_pairs,
        pairs_file,
        write_datasets,
    )
    from stoplens.data.build import behavioral_file

    out = write_datasets(
        build_datasets(DataConfig(trigger=trigger, n_prompts=24, n_documents=5)), tmp_path / "d"
    )
    recs = load_behavioral(out / behavioral_file("train"))  # schema-validated
    for r in recs:
        prompt = " ".join(m["content"] for m in r["messages"][:-1])
        assert PLACEHOLDER not in prompt
        assert contains_trigger(prompt, trigger) == (r["meta"]["kind"] == "trigger"), r["meta"]
    pairs = load_pairs(out / pairs_file("test"))
    assert pairs
    for p in pairs:
        assert sum(m["content"].count(PLACEHOLDER) for m in p["template"]) == 1
        assert sum(m["content"].count(trigger) for m in p["triggered"]) == 1
        assert not any(contains_trigger(m["content"], trigger) for m in p["control_messages"])


def test_noncharacters_are_refused() -> None:
    from stoplens.data.trigger import check_trigger
    from stoplens.errors import DataError

    with pytest.raises(DataError, match="noncharacter"):
        check_trigger("$ST\ufdd0OP")
