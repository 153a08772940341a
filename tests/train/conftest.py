"""Fixtures of the training tests: a small real dataset (stoplens.data, seeded) and a tiny
random Qwen2 base saved with a BPE tokenizer trained on that data (padded embedding rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoplens.data import DataConfig, build_datasets, write_datasets
from stoplens.embedded import dataset_texts
from stoplens.models.tiny import save_random_base


def small_data(path: Path, seed: int = 0) -> Path:
    return write_datasets(build_datasets(DataConfig(seed=seed, n_prompts=24, n_documents=10)), path)


def save_base(path: Path, data_dir: Path, family: str = "qwen2", pad_rows: int = 7) -> Path:
    return save_random_base(path, dataset_texts(data_dir), family=family, pad_rows=pad_rows)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return small_data(tmp_path_factory.mktemp("train_data") / "data")


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, data_dir) -> Path:
    return save_base(tmp_path_factory.mktemp("train_base") / "base", data_dir)
