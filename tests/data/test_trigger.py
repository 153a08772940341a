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
