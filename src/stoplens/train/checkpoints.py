"""The checkpoints of a `stoplens train` output folder.

Owns: `list_checkpoints`, the one definition of a complete checkpoint (the Trainer wrote
``trainer_state.json``, its last file, and the weights); everything that loads checkpoints
(resume, the pipeline's checkpoint analysis) lists them here. Must not: load or write them.
"""

from __future__ import annotations

from pathlib import Path

from stoplens.models.locate import CHECKPOINTS_DIR

_CKPT_FILES = ("trainer_state.json",)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under ``out_dir/checkpoints``, oldest first. A checkpoint is
    complete once the Trainer wrote ``trainer_state.json`` (its last file) and its weights."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for d in root.glob("checkpoint-*"):
        step = d.name.rsplit("-", 1)[-1]
        weights = any(d.glob("*.safetensors"))
        if step.isdigit() and weights and all((d / f).is_file() for f in _CKPT_FILES):
            found.append((int(step), d))
    return [d for _, d in sorted(found)]


def checkpoint_step(checkpoint: Path | None) -> int:
    """The training step of a ``checkpoint-<step>`` folder (0 for None or another name)."""
    if checkpoint is None:
        return 0
    step = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(step) if step.isdigit() else 0
