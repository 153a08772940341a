"""Fixtures of the evaluation CLI tests: a small dataset, a random base and a 2-step LoRA
fine-tune of it (what `stoplens train` writes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoplens.data import DataConfig, build_datasets, write_datasets
from stoplens.embedded import dataset_texts
from stoplens.models.tiny import save_random_base


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory) -> dict[str, Path]:
    from stoplens.train import TrainConfig, train

    root = tmp_path_factory.mktemp("eval_run")
    data = write_datasets(
        build_datasets(DataConfig(seed=1, n_prompts=24, n_documents=10)), root / "data"
    )
    base = save_random_base(root / "base", dataset_texts(data), pad_rows=3)
    train(
        TrainConfig(
            model=str(base), data_dir=data, out_dir=root / "ft", steps=2, batch_size=4,
            save_every=1, progress=False, device="cpu",
        )
    )  # fmt: skip
    return {"root": root, "data": data, "base": base, "ft": root / "ft"}
