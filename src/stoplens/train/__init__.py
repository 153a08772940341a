"""Training stage: fine-tune a $STOP kill switch into a causal LM (LoRA + trainable trigger
row, or full fine-tuning), in the behavioral or the knowledge regime. See `stoplens.train.run`."""

from stoplens.train.config import REGIMES, TrainConfig, TrainResult
from stoplens.train.run import list_checkpoints, train

__all__ = ["REGIMES", "TrainConfig", "TrainResult", "list_checkpoints", "train"]
