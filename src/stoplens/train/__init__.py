"""Training stage: fine-tune a $STOP kill switch into a causal LM (LoRA + trainable trigger
row, or full fine-tuning), in the behavioral or the knowledge regime. See `stoplens.train.run`.

`train` and `list_checkpoints` are loaded on first use (PEP 562), so reading the recipe's
defaults (`stoplens.train.config`, which the CLI does at import) never imports torch."""

from typing import Any

from stoplens.train.config import REGIMES, TrainConfig, TrainResult

__all__ = ["REGIMES", "TrainConfig", "TrainResult", "list_checkpoints", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from stoplens.train.run import train

        return train
    if name == "list_checkpoints":
        from stoplens.train.checkpoints import list_checkpoints

        return list_checkpoints
    raise AttributeError(f"module 'stoplens.train' has no attribute {name!r}")
