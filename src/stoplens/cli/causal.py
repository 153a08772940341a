"""`stoplens causal`: activation patching, directional ablation and addition, held-out
placements, base-model control, cross-regime comparison and checkpoint dynamics.

Owns: the command's options. Must not: compute (the work is
`stoplens.pipeline.analyze_only`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from stoplens.cli import _common as common

EPILOG = """
Examples:

  stoplens causal                                    # the embedded default pair

  stoplens causal --model Qwen/Qwen2.5-1.5B-Instruct --adapter runs/qwen/models/behavioral/final --knowledge runs/qwen/models/knowledge/final
"""


def register(app: typer.Typer) -> None:
    @app.command("causal", epilog=EPILOG)
    def causal(
        model: str | None = typer.Option(
            None,
            help=f"Fine-tuned model ({common.MODEL_FORMS}), or the base when --adapter is given. Default: the embedded tiny pair.",
        ),
        adapter: str | None = typer.Option(
            None, help="peft adapter folder applied on --model (its checkpoints/ are analysed too)."
        ),
        base: str | None = typer.Option(None, help="Base model for the base-model control."),
        knowledge: str | None = typer.Option(
            None,
            help="A knowledge-regime fine-tune of the same base (adapter or model folder) for the cross-regime comparison.",
        ),
        data: Path | None = typer.Option(None, help="Dataset folder (default: <run-dir>/data)."),
        run_dir: Path = typer.Option(
            Path("runs/default"), help="Run directory; the report goes to <run-dir>/report."
        ),
        control_kind: common.ControlKind = "word",
        batch_size: common.BatchSize = 32,
        checkpoints: bool = typer.Option(
            True,
            "--checkpoints/--no-checkpoints",
            help="Analyse the training checkpoints (--no-checkpoints skips them).",
        ),
        components: common.Components = True,
        device: common.Device = None,
        dtype: common.Dtype = None,
        device_map: common.DeviceMap = None,
        trust_remote_code: common.TrustRemoteCode = False,
        trigger: common.Trigger = None,
        inference: common.Inference = "merged",
        seed: common.Seed = 0,
        quiet: common.Quiet = False,
    ) -> None:
        """Causal evidence: is the found direction the cause of stopping?"""
        from stoplens.pipeline import analyze_only
        from stoplens.rundir import RunDir

        spec = common.model_spec(
            model=model, adapter=adapter, base=base, device=device, dtype=dtype,
            device_map=device_map, trust_remote_code=trust_remote_code, knowledge=knowledge,
            trigger=trigger, inference=inference,
        )  # fmt: skip
        opts = common.analyze_options(
            control_kind,
            batch_size,
            seed,
            quiet,
            checkpoints=checkpoints,
            components=components,
        )
        run = RunDir(run_dir)
        analyze_only(spec, run, opts, causal=True, data_dir=data)
        typer.echo(f"report: {run.summary_md}")
