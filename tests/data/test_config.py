"""DataConfig defaults and validation: every bad setting is a one-line DataError naming the fix."""

from __future__ import annotations

import pytest

from stoplens.data import CONTROL_KINDS, DataConfig
from stoplens.data.topics import build_pool
from stoplens.errors import DataError


def test_defaults_meet_the_binding_sizes() -> None:
    cfg = DataConfig()
    cfg.validate(pool_size=len(build_pool(0)))
    assert cfg.trigger == "$STOP"
    assert cfg.n_documents >= 500
    assert cfg.n_prompts >= 360
    sizes = cfg.split_sizes()
    assert sum(sizes.values()) == cfg.n_prompts
    assert sizes["test"] >= 64
    assert (cfg.train_fraction, cfg.val_fraction, cfg.test_fraction) == (0.6, 0.15, 0.25)
    assert cfg.control_kinds == CONTROL_KINDS


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trigger": ""}, "--trigger"),
        ({"trigger": "   "}, "--trigger"),
        ({"trigger": "$ST OP"}, "whitespace"),
        ({"trigger": "\ufdd0STOP\ufdd1"}, "noncharacter"),
        ({"n_prompts": 5}, "--n-prompts >="),
        ({"n_documents": 2}, "--n-documents"),
        ({"control_kinds": ("word", "banana")}, "unknown control kind 'banana'"),
        ({"control_kinds": ()}, "--control-kinds"),
        ({"train_fraction": 0.7}, "sum to"),
        ({"triggers_per_prompt": 0}, "triggers_per_prompt"),
    ],
)
def test_validate_names_the_problem(kwargs: dict, needle: str) -> None:
    with pytest.raises(DataError) as e:
        DataConfig(**kwargs).validate()
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_n_prompts_beyond_the_pool_is_refused() -> None:
    n = len(build_pool(0))
    with pytest.raises(DataError, match=f"--n-prompts <= {n}"):
        DataConfig(n_prompts=n + 1).validate(pool_size=n)
