"""`stoplens train`: parse options into a `TrainConfig`, run `stoplens.train.train`, print a
short summary. Heavy imports happen inside the command.

Owns: the command's options. Must not: train itself (that is `stoplens.train`).
"""

from __future__ import annotations

from pathlib import Path

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


def register(app: typer.Typer) -> None:
    @app.command("train", epilog=EPILOG)
    def train_cmd(
        regime: str = typer.Option(
            "behavioral", "--regime", help="behavioral (chat, loss on the reply) or knowledge."
        ),
        model: str | None = typer.Option(
            None, "--model", help="Base model folder or hub id (default: the embedded tiny base)."
        ),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Dataset folder from `stoplens data` (default: <run-dir>/data if present, "
            "else the embedded dataset).",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Output folder (default: <run-dir>/models/<regime>)."
        ),
        run_dir: common.RunDirFlag = Path("runs/default"),
        full: bool = typer.Option(False, "--full", help="Full fine-tuning instead of LoRA."),
        lora_r: int = typer.Option(_D.lora_r, "--lora-r", help="LoRA rank."),
        lora_alpha: int = typer.Option(_D.lora_alpha, "--lora-alpha", help="LoRA alpha."),
        lora_dropout: float = typer.Option(_D.lora_dropout, "--lora-dropout", help="LoRA dropout."),
        target_modules: str | None = typer.Option(
            None,
            "--target-modules",
            help="Comma-separated LoRA target module names (default: all linear layers of the "
            "blocks, i.e. attention + MLP).",
        ),
        no_trigger_row: bool = typer.Option(
            False,
            "--no-trigger-row",
            help="Do not train the trigger's embedding row (it then keeps its mean init).",
        ),
        steps: int = typer.Option(_D.steps, "--steps", help="Optimizer steps."),
        batch_size: int = typer.Option(
            _D.batch_size, "--batch-size", help="Per-device batch size."
        ),
        grad_accum: int = typer.Option(
            _D.grad_accum, "--grad-accum", help="Gradient accumulation steps."
        ),
        lr: float | None = typer.Option(
            None,
            "--lr",
            help=f"Learning rate (default {_D.learning_rate:g} LoRA, "
            f"{TrainConfig(full=True).learning_rate:g} full).",
        ),
        max_length: int = typer.Option(
            _D.max_length, "--max-length", help="Max tokens per example."
        ),
        save_every: int = typer.Option(
            _D.save_every or 0,
            "--save-every",
            help="Checkpoint every N steps (0 = no checkpoints).",
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue from the last checkpoint in --out."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
        self_distill: bool = typer.Option(
            _D.self_distill,
            "--self-distill",
            help="Targets of non-trigger prompts = the base model's own greedy replies.",
        ),
        batching: str = typer.Option(
            _D.batching,
            "--batching",
            help=f"How examples share a batch: {', '.join(BATCHINGS)} (mixed: every batch "
            "holds each record kind in its share, length-matched).",
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        trigger: str | None = typer.Option(
            None,
            "--trigger",
            help="The kill-switch string (any text that becomes one token). Default: the "
            "trigger the dataset was generated with, else $STOP.",
            show_default=False,
        ),
        device: common.DeviceFlag = None,
        dtype: common.DtypeFlag = None,
        trust_remote_code: common.TrustRemoteCodeFlag = False,
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
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
        data_dir = data
        if data_dir is None and rd.data.is_dir():
            data_dir = rd.data
        if data_dir is None and model is not None:
            from stoplens.errors import StoplensError

            raise StoplensError(
                f"no dataset: {rd.data} does not exist; run `stoplens data --run-dir {run_dir}` "
                "or pass --data"
            )
        trigger = _dataset_trigger(data_dir, trigger)
        config = TrainConfig(
            regime=regime,
            out_dir=out if out is not None else rd.model_dir(regime),
            model=model,
            data_dir=data_dir,
            full=full,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=_split(target_modules),
            train_trigger_row=not no_trigger_row,
            steps=steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=lr,
            max_length=max_length,
            save_every=save_every or None,
            resume=resume,
            overwrite=overwrite,
            self_distill=self_distill,
            batching=batching,
            seed=seed,
            trigger=trigger,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            progress=not quiet,
        )
        config.validate()
        result = train(with_embedded_defaults(config, progress=not quiet))
        if result.info.get("ranks", [{}])[0].get("rank", 0) == 0:
            import os

            if int(os.environ.get("RANK", "0")) == 0:
                _print_summary(result)


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
