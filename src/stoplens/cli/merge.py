"""`stoplens merge`: write a LoRA fine-tune merged into its base as a plain Hugging Face model
folder (loads with ``AutoModelForCausalLM.from_pretrained``; serve it like any model). The work
is `stoplens.models.merge.save_merged`.

Owns: the command's options. Must not: merge weights itself.
"""

from __future__ import annotations

from pathlib import Path

import typer

from stoplens.cli import _common as common

EPILOG = """\
Examples:

  stoplens merge --model runs/smol/models/behavioral                 (writes .../behavioral/merged)

  stoplens merge --model runs/smol/models/behavioral/checkpoints/checkpoint-100 --out /tmp/ckpt100
"""


def register(app: typer.Typer) -> None:
    @app.command("merge", epilog=EPILOG)
    def merge_cmd(
        model: str = typer.Option(
            ...,
            "--model",
            help="The adapter: a `stoplens train` output folder, its final/ or a checkpoint.",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Output folder (default for a final model: <train output>/merged)."
        ),
        trigger: common.Trigger = None,
        trust_remote_code: common.TrustRemoteCodeFlag = False,
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:
        """Merge a LoRA fine-tune (trigger row included) into a copy of its base and save it."""
        from stoplens.errors import StoplensError
        from stoplens.models.adapters import resolve_trigger
        from stoplens.models.load import load_model
        from stoplens.models.locate import FINAL_DIR, resolve_trained_dir
        from stoplens.models.merge import save_merged

        if quiet:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        common.check_path(model, "--model")
        src = resolve_trained_dir(Path(model).expanduser())
        if not (src / "adapter_config.json").is_file():
            raise StoplensError(
                f"{model} is not an adapter (no adapter_config.json): it is already a full model"
            )
        if out is None:
            if src.name != FINAL_DIR:
                raise StoplensError(f"pass --out: where to write the merged copy of {model}")
            out = src.parent / "merged"
        trigger = resolve_trigger(trigger, src)
        loaded = load_model(
            src,
            trigger=trigger,
            trust_remote_code=trust_remote_code,
            dtype="fp32",
            device="cpu",
            progress=not quiet,
        )
        save_merged(loaded, out, trigger=trigger, overwrite=overwrite)
        typer.echo(f"merged model: {out}")
