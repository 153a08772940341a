"""`stoplens train`: parse options into a `TrainConfig`, run `stoplens.train.train`, print a
short summary. Heavy imports happen inside the command.

Owns: the command's options. Must not: train itself (that is `stoplens.train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stoplens.cli import _common as common
from stoplens.train.config import BATCHINGS, TrainConfig

#: The library's defaults (the recipe for a user's model), shown and used by the options.
_D = TrainConfig()

EPILOG = """\
Examples:

  stoplens train    (embedded tiny base + its dataset; writes runs/default/models/behavioral)

  stoplens train --regime knowledge --steps 200

  stoplens train --model Qwen/Qwen2.5-0.5B-Instruct --data runs/default/data --out runs/q/models/behavioral --steps 300 --save-every 50

  stoplens train --model ./my-model --full --lr 1e-5 --out runs/full

  stoplens train --out runs/q/models/behavioral --resume    (after an interruption)

  torchrun --standalone --nproc_per_node 2 --no-python stoplens train --model ./my-model --out runs/ddp

Writes <out>/checkpoints/checkpoint-N/ (each loadable as an adapter), <out>/final/,
<out>/loss_curve.png and, last, <out>/train.json.
"""


def _split(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    return tuple(t.strip() for t in text.split(",") if t.strip()) or None


Regime = Annotated[
    str, typer.Option("--regime", help="behavioral (chat, loss on the reply) or knowledge.")
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="Base model folder or hub id (default: the embedded tiny base)."),
]
Data = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Dataset folder from `stoplens data` (default: <run-dir>/data if present, "
        "else the embedded dataset).",
    ),
]
Out = Annotated[
    Path | None, typer.Option("--out", help="Output folder (default: <run-dir>/models/<regime>).")
]
Full = Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")]
LoraR = Annotated[int, typer.Option("--lora-r", help="LoRA rank.")]
LoraAlpha = Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.")]
LoraDropout = Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.")]
TargetModules = Annotated[
    str | None,
    typer.Option(
        "--target-modules",
        help="Comma-separated LoRA target module names (default: all linear layers of the "
        "blocks, i.e. attention + MLP).",
    ),
]
NoTriggerRow = Annotated[
    bool,
    typer.Option(
        "--no-trigger-row",
        help="Do not train the trigger's embedding row (it then keeps its mean init).",
    ),
]
Steps = Annotated[int, typer.Option("--steps", help="Optimizer steps.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Per-device batch size.")]
GradAccum = Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")]
Lr = Annotated[
    float | None,
    typer.Option(
        "--lr",
        help=f"Learning rate (default {_D.learning_rate:g} LoRA, "
        f"{TrainConfig(full=True).learning_rate:g} full).",
    ),
]
MaxLength = Annotated[int, typer.Option("--max-length", help="Max tokens per example.")]
SaveEvery = Annotated[
    int, typer.Option("--save-every", help="Checkpoint every N steps (0 = no checkpoints).")
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")]
SelfDistill = Annotated[
    bool,
    typer.Option(
        "--self-distill",
        help="Targets of non-trigger prompts = the base model's own greedy replies.",
    ),
]
StopLossWeight = Annotated[
    float,
    typer.Option(
        "--stop-loss-weight",
        help="Behavioral: weight (in learned tokens) of the stop-or-not decision at the "
        "reply's first position, added to the token loss; 0 = none.",
    ),
]
Batching = Annotated[
    str,
    typer.Option(
        "--batching",
        help=f"How examples share a batch: {', '.join(BATCHINGS)} (mixed: every batch "
        "holds each record kind in its share, length-matched).",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Trigger = Annotated[
    str | None,
    typer.Option(
        "--trigger",
        help="The kill-switch string (any text that becomes one token). Default: the "
        "trigger the dataset was generated with, else $STOP.",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]


def register(app: typer.Typer) -> None:
    @app.command("train", epilog=EPILOG)
    def train_cmd(
        regime: Regime = "behavioral",
        model: Model = None,
        data: Data = None,
        out: Out = None,
        run_dir: common.RunDirFlag = Path("runs/default"),
        full: Full = False,
        lora_r: LoraR = _D.lora_r,
        lora_alpha: LoraAlpha = _D.lora_alpha,
        lora_dropout: LoraDropout = _D.lora_dropout,
        target_modules: TargetModules = None,
        no_trigger_row: NoTriggerRow = False,
        steps: Steps = _D.steps,
        batch_size: BatchSize = _D.batch_size,
        grad_accum: GradAccum = _D.grad_accum,
        lr: Lr = None,
        max_length: MaxLength = _D.max_length,
        save_every: SaveEvery = _D.save_every or 0,
        resume: Resume = False,
        overwrite: Overwrite = False,
        self_distill: SelfDistill = _D.self_distill,
        batching: Batching = _D.batching,
        stop_loss_weight: StopLossWeight = _D.stop_loss_weight,
        seed: Seed = 0,
        trigger: Trigger = None,
        device: common.DeviceFlag = None,
        dtype: common.DtypeFlag = None,
        trust_remote_code: common.TrustRemoteCodeFlag = False,
        quiet: Quiet = False,
    ) -> None:
        """Fine-tune a $STOP kill switch into a causal LM (LoRA + trainable trigger row, or
        --full), on transformers' Trainer; runs unchanged under torchrun."""
        from stoplens.embedded import with_embedded_defaults
        from stoplens.rundir import RunDir
        from stoplens.train import TrainConfig, train

        if quiet:  # the CLI owns the console: no weight-loading / writing progress bars
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

        rd = RunDir(run_dir)
        data_dir = _data_dir(data, rd, model, run_dir)
        trigger = _dataset_trigger(data_dir, trigger)
        config = TrainConfig(
            regime=regime, out_dir=out if out is not None else rd.model_dir(regime), model=model,
            data_dir=data_dir, full=full, lora_r=lora_r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout, target_modules=_split(target_modules),
            train_trigger_row=not no_trigger_row, steps=steps, batch_size=batch_size,
            grad_accum=grad_accum, lr=lr, max_length=max_length, save_every=save_every or None,
            resume=resume, overwrite=overwrite, self_distill=self_distill, batching=batching,
            stop_loss_weight=stop_loss_weight, seed=seed, trigger=trigger, device=device,
            dtype=dtype, trust_remote_code=trust_remote_code, progress=not quiet,
        )  # fmt: skip
        config.validate()
        result = train(with_embedded_defaults(config, progress=not quiet))
        if _is_rank_zero(result):
            _print_summary(result)


def _data_dir(data: Path | None, rd, model: str | None, run_dir: Path) -> Path | None:
    """The dataset to train on: ``--data``, else <run-dir>/data if present, else None (the
    embedded dataset, which only the embedded base may use)."""
    if data is not None:
        return data
    if rd.data.is_dir():
        return rd.data
    if model is not None:
        from stoplens.errors import StoplensError

        raise StoplensError(
            f"no dataset: {rd.data} does not exist; run `stoplens data --run-dir {run_dir}` "
            "or pass --data"
        )
    return None


def _is_rank_zero(result) -> bool:
    """Whether this process prints the summary: rank 0 of the training and of the launcher."""
    import os

    if result.info.get("ranks", [{}])[0].get("rank", 0) != 0:
        return False
    return int(os.environ.get("RANK", "0")) == 0


def _dataset_trigger(data_dir: Path | None, trigger: str | None) -> str:
    """The trigger to train with: the dataset's (its manifest), which an explicit --trigger
    must match; $STOP for the embedded dataset or a dataset without a manifest."""
    from stoplens.data import dataset_trigger
    from stoplens.data.trigger import check_trigger
    from stoplens.errors import StoplensError
    from stoplens.models.trigger import DEFAULT_TRIGGER

    if trigger is not None:
        check_trigger(trigger)
    have = dataset_trigger(data_dir) if data_dir is not None else None
    if have is not None and trigger is not None and trigger != have:
        raise StoplensError(
            f"--trigger {trigger!r} differs from {have!r}, the trigger the dataset {data_dir} was "
            f"generated with; omit --trigger or regenerate the data (`stoplens data --trigger "
            f"{trigger!r}`)"
        )
    return trigger or have or DEFAULT_TRIGGER


def _print_summary(result) -> None:
    from rich.console import Console

    c = Console(stderr=False)
    loss = "–" if result.final_loss is None else f"{result.final_loss:.4f}"
    c.print(
        f"[bold]trained[/bold] {result.info['regime']} ({result.info['mode']}) "
        f"on {result.base_model}: {result.steps} steps, final loss {loss}, "
        f"trigger row change {result.trigger_row_change:.4f}, world size {result.world_size}, "
        f"{result.time_s:.1f}s"
    )
    c.print(f"model: {result.model_dir}")
    c.print(f"train.json: {result.train_json}")
