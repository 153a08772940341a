"""tiny.py: random models of every family, built from configs."""

from __future__ import annotations

import pytest

from stoplens.models import arch
from stoplens.models.tiny import FAMILIES, random_model


@pytest.mark.parametrize("family", FAMILIES)
def test_random_model_of_every_family(family):
    m = random_model(family, 100, d_model=32, n_layers=3)
    assert arch.n_layers(m) == 3 and arch.d_model(m) == 32
    assert arch.get_embed(m).weight.shape[0] == 100
    assert not m.training


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown family"):
        random_model("mamba", 10)
