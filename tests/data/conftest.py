"""Shared fixtures for the dataset-stage tests: one small build (fast checks) and one build at
the default sizes (the binding numbers), each made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoplens.data import DataBundle, DataConfig, build_datasets, write_datasets

SMALL = DataConfig(seed=1, n_prompts=60, n_documents=25)


@pytest.fixture(scope="session")
def small_bundle() -> DataBundle:
    return build_datasets(SMALL)


@pytest.fixture(scope="session")
def default_bundle() -> DataBundle:
    return build_datasets(DataConfig())


@pytest.fixture(scope="session")
def default_dir(default_bundle: DataBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default build written to disk once."""
    return write_datasets(default_bundle, tmp_path_factory.mktemp("default") / "data")
