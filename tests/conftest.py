"""Shared test setup: seeds everything before each test, runs offline, and offers --device so
the same tests can run on a GPU when one is present (CPU by default)."""

from __future__ import annotations

import os
import random

import pytest

# Tests never touch a hub: any accidental download fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and a shared machine's load cannot then multiply the
# cost of every small op (measured here: 18 s instead of 0.4 s for one capture under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for model tests (cpu, cuda)")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--device"))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # pragma: no cover
        pass
    import sys

    torch = sys.modules.get(
        "torch"
    )  # seed torch only where a test uses it (keeps data tests light)
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache root holding the embedded default pair, built once per test session (the
    end-to-end tests share it; building it is what `stoplens run` does first on a new
    machine)."""
    from stoplens.models.tiny import build_tiny_pair

    root = tmp_path_factory.mktemp("stoplens_cache")
    build_tiny_pair(root, progress=False)
    return root
