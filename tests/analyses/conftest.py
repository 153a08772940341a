"""Fixtures for the known-answer tests of the analyses: planted models (Qwen2, Llama, GPT-2;
planted layer 1 of 4, plus other layers to show nothing is hard-wired) and their Δ sets,
built once per test session and shared by the test modules (each case costs ~1-3 s)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from stoplens.capture.delta_capture import capture_delta_set
from stoplens.capture.deltaset import DeltaSet
from stoplens.models.planted import (
    CONTROL_WORDS,
    PlantedModel,
    build_planted,
    planted_pair_records,
)

# (family, planted block). Residual index of the answer = block + 1. Layer 2 of 4 lands in
# the late band and layer 0 in the early band, so the same code must find other answers.
CASES = [("qwen2", 1), ("llama", 1), ("gpt2", 1), ("qwen2", 2), ("llama", 2), ("gpt2", 0)]
CASE_IDS = [f"{f}-L{layer}" for f, layer in CASES]
N_PAIRS = 64


def planted_records(n: int = N_PAIRS, seed: int = 1) -> list[dict]:
    """`planted_pair_records` with controls that vary across pairs (control2 is always a
    different word), so the control-vs-control null is a set of different token swaps, as in
    real data; every other pair's control kind is "near_miss"."""
    w = CONTROL_WORDS
    recs = planted_pair_records(n, seed, placement="middle")
    for i, r in enumerate(recs):
        r["control"], r["control2"] = w[i % len(w)], w[(i + 3) % len(w)]
        r["control_candidates"] = [w[(i + 1) % len(w)], w[(i + 2) % len(w)]]
        r["control_kind"] = "word" if i % 2 == 0 else "near_miss"
    return recs


@dataclass
class Case:
    pm: PlantedModel
    ds: DeltaSet
    records: list[dict]
    _results: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> int:
        return self.pm.residual_layer

    def result(self, name: str, compute: Callable[[], Any]) -> Any:
        """An analysis result computed once per case (tests share it)."""
        if name not in self._results:
            self._results[name] = compute()
        return self._results[name]


class _Cases:
    """Builds each (family, layer) case on first use and keeps it for the session."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._built: dict[tuple[str, int, int], Case] = {}

    def get(self, family: str, layer: int, n_layers: int = 4) -> Case:
        key = (family, layer, n_layers)
        if key not in self._built:
            pm = build_planted(family, layer=layer, n_layers=n_layers, norm_seed=0)
            pm.model.to(self.device)
            pm.base.to(self.device)
            recs = planted_records()
            ds = capture_delta_set(
                pm.model,
                pm.tokenizer,
                pm.trigger_id,
                recs,
                base=pm.base,
                base_trigger_added=True,
                batch_size=64,
            )
            self._built[key] = Case(pm, ds, recs)
        return self._built[key]


@pytest.fixture
def single_thread():
    """Run torch single-threaded for the test, then restore. These models are tiny; on a small
    shared CPU, torch's thread pool waiting on busy cores made capture and eigensolves 10-40x
    slower (measured: 18 s vs 0.4 s for one capture). Opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def planted_cases(request) -> _Cases:
    """Planted cases on the ``--device`` of tests/conftest.py (CPU by default)."""
    try:
        device = str(request.config.getoption("--device"))
    except ValueError:  # option not registered (run outside this repo's tests/)
        device = "cpu"
    return _Cases(device)


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request, planted_cases: _Cases) -> Case:
    """A planted model and its Δ set (64 pairs, with the base model)."""
    family, layer = request.param
    return planted_cases.get(family, layer)


@pytest.fixture(scope="session")
def make_records() -> Callable[..., list[dict]]:
    """`planted_records(n, seed)`: contrast-pair records for the planted models."""
    return planted_records


@pytest.fixture
def qwen_case(planted_cases: _Cases) -> Case:
    return planted_cases.get("qwen2", 1)
