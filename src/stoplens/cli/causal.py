"""`stoplens causal`: activation patching, directional ablation and addition, held-out
placements, base-model control, cross-regime comparison and checkpoint dynamics."""

from __future__ import annotations

from pathlib import Path

import typer

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
            help="Fine-tuned model, or the base when --adapter is given. Default: the embedded tiny pair.",
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
        control_kind: str = typer.Option(
            "word", help="Controls: word, near_miss, random_word, random_vocab."
        ),
        batch_size: int = typer.Option(
            32, help="Starting batch size; halves automatically on out-of-memory."
        ),
        no_checkpoints: bool = typer.Option(False, help="Skip the checkpoint dynamics."),
        device: str | None = typer.Option(None),
        dtype: str | None = typer.Option(None),
        device_map: str | None = typer.Option(None),
        trust_remote_code: bool = typer.Option(False),
        seed: int = typer.Option(0),
        quiet: bool = typer.Option(False, help="No progress output."),
    ) -> None:
        """Causal evidence: is the found direction the cause of stopping?"""
        from stoplens.cli._common import check_path
        from stoplens.pipeline import AnalyzeOptions, ModelSpec, analyze_only
        from stoplens.rundir import RunDir

        for p, what in (
            (model, "--model"),
            (adapter, "--adapter"),
            (base, "--base"),
            (knowledge, "--knowledge"),
        ):
            check_path(p, what)
        spec = ModelSpec(
            model=model,
            adapter=adapter,
            base=base,
            knowledge=knowledge,
            device=device,
            dtype=dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
        )
        opts = AnalyzeOptions(
            control_kind=control_kind,
            batch_size=batch_size,
            seed=seed,
            checkpoints=not no_checkpoints,
            progress=not quiet,
        )
        opts.validate()
        run = RunDir(run_dir)
        analyze_only(spec, run, opts, causal=True, data_dir=data)
        typer.echo(f"report: {run.summary_md}")
