"""The two-part headline over combinations of checks: "a dedicated $STOP mechanism" only when
the representation is strong and every causal check holds; every other combination is stated
as it is."""

from __future__ import annotations

import itertools

import pytest

from stoplens.report.verdicts import CAUSAL_KEYS, Check, Verdicts, causal_text


def rep(strong: list[bool | None], medium: list[bool | None] = ()) -> list[Check]:
    out = [Check("strong", f"s{i}", p, 1.0, key=f"s{i}") for i, p in enumerate(strong)]
    out += [Check("medium", f"m{i}", p, 1.0, key=f"m{i}") for i, p in enumerate(medium)]
    return out


def causal(**flags: bool) -> list[Check]:
    return [Check("causal", k, v, 1.0, key=k) for k, v in flags.items()]


ALL = dict(necessary=True, sufficient=True, specific=True, general=True, cheap=True)


def test_dedicated_only_when_everything_holds():
    v = Verdicts(rep([True, True, True]) + causal(**ALL))
    assert v.representation == "strong" and v.dedicated
    assert v.overall == "dedicated mechanism"
    assert v.headline.startswith("Strong evidence for a dedicated $STOP mechanism")


@pytest.mark.parametrize("failing", CAUSAL_KEYS)
def test_any_failing_causal_check_withdraws_the_claim(failing):
    v = Verdicts(rep([True, True, True]) + causal(**{**ALL, failing: False}))
    assert not v.dedicated and v.overall == "partial evidence"
    assert v.headline.startswith("No dedicated $STOP mechanism is claimed")
    assert "representation: strong" in v.headline


def test_sufficient_but_not_necessary_is_said_as_it_is():
    v = Verdicts(rep([True, True]) + causal(**{**ALL, "necessary": False}))
    assert "sufficient; necessity not shown" in v.headline
    # both reasons a necessity line fails are named: the headline claims neither alone
    assert "the stop survives ablating the direction, or the ablation is not clean" in v.headline


def test_held_out_necessity_is_not_asked_of_an_unnecessary_direction():
    checks = [
        *causal(**{**ALL, "necessary": False}),
        Check("causal", "gn", False, 0.0, key="general:necessary"),
        Check("causal", "gs", True, 1.0, key="general:sufficient"),
    ]
    checks = [c for c in checks if c.key != "general"]
    v = Verdicts(rep([True]) + checks)
    assert v.causal["general"] is True
    assert "does not generalise" not in v.headline


def test_not_specific_is_named():
    v = Verdicts(rep([True]) + causal(**{**ALL, "specific": False}))
    assert "not specific to the trigger" in v.headline


def test_weak_checks_do_not_pull_the_headline_down():
    """A passing weak pattern (e.g. 'diffuse') describes; it does not decide the level."""
    checks = [*rep([True, True]), Check("weak", "diffuse", True, 30.0, key="diffuse")]
    assert Verdicts(checks).representation == "strong"


def test_shape_descriptions_never_judge():
    checks = [*rep([True]), Check("describe", "shape", None, "late spike", key="shape")]
    assert Verdicts(checks).representation == "strong"


@pytest.mark.parametrize(
    "strong,medium,level",
    [
        ([True, True], [False], "strong"),
        ([True, False], [False], "medium"),
        ([False, False, False], [True, True], "medium"),
        ([False, False, False], [True, False], "weak"),
        ([False, False], [False], "none"),
        ([None, None], [None], "none"),
    ],
)
def test_representation_levels(strong, medium, level):
    assert Verdicts(rep(strong, medium)).representation == level


def test_no_mechanism_and_no_behaviour():
    v = Verdicts(rep([False, False]) + causal(**{k: False for k in ALL}))
    assert v.overall == "no mechanism" and v.headline.startswith("No evidence of a $STOP mechanism")
    gate = Check("behaviour", "stops", False, 0.0, note="it stops on 0 of 96", key="behaviour")
    v = Verdicts([gate, *rep([True, True]), *causal(**ALL)])
    assert v.overall == "no stop behaviour" and v.representation == "none" and not v.dedicated
    assert v.headline.startswith("No $STOP behaviour to explain")


def test_headline_over_all_causal_combinations_is_consistent():
    for bits in itertools.product([True, False], repeat=len(CAUSAL_KEYS)):
        flags = dict(zip(CAUSAL_KEYS, bits, strict=True))
        v = Verdicts(rep([True, True]) + causal(**flags))
        assert v.dedicated is all(bits)
        text = causal_text(v.causal)
        assert text in v.headline
        for k, ok in flags.items():
            if k in ("specific", "general", "cheap") and not ok:
                assert {
                    "specific": "not specific",
                    "general": "does not generalise",
                    "cheap": "not cheap",
                }[k] in text
    d = Verdicts(rep([True]) + causal(**ALL)).to_dict()
    assert set(d["headline"]) == {"representation", "causal", "causal_text", "dedicated", "text"}


def test_check_round_trips_through_json():
    c = Check(
        "strong",
        "x",
        True,
        1.5,
        (1.0, 2.0),
        9,
        0.5,
        "t",
        "n",
        "fixed-token null",
        "m",
        "f",
        "/a",
        "k",
    )
    assert Check.from_dict(c.to_dict()) == c
    old = {k: v for k, v in c.to_dict().items() if k not in ("meaning", "key")}  # older runs
    assert Check.from_dict(old).claim == "x"
