"""`stoplens run`: the whole pipeline (data -> train -> eval -> analyses -> causal -> report)."""

from __future__ import annotations

from pathlib import Path

import typer

from stoplens.cli import _common as common

EPILOG = """
Examples:

  stoplens run                                       # embedded default: tiny pair built offline

  stoplens run --model Qwen/Qwen2.5-1.5B-Instruct --regimes behavioral,knowledge --run-dir runs/qwen

  stoplens run --model Qwen/Qwen2.5-1.5B-Instruct --adapter runs/qwen/models/behavioral/final   # skip training

  stoplens run --model SmolLM2-135M-Instruct.Q4_1.gguf --trigger '<<STOP>>' --run-dir runs/smol
"""


def register(app: typer.Typer) -> None:
    @app.command("run", epilog=EPILOG)
    def run(
        model: str | None = typer.Option(
            None,
            help=f"Base model to fine-tune and analyse: {common.MODEL_FORMS}. Default: the embedded tiny pair.",
        ),
        adapter: str | None = typer.Option(
            None, help="An already trained adapter on --model: skip training."
        ),
        base: str | None = typer.Option(
            None, help="Base model, when --model is already fine-tuned (merged): skip training."
        ),
        regimes: str = typer.Option(
            "behavioral,knowledge",
            help="Training regimes for --model: behavioral, knowledge or both.",
        ),
        train_steps: int | None = typer.Option(
            None, help="Fine-tuning steps per regime (default: the train stage's default)."
        ),
        run_dir: Path = typer.Option(
            Path("runs/default"),
            help="Where everything goes: data/, models/, cache/, results/, report/.",
        ),
        control_kind: common.ControlKind = "word",
        layers: str | None = typer.Option(
            None, help="Residual layers for the analyses (default: all)."
        ),
        n_pairs: int | None = typer.Option(
            None, help="At most this many test pairs for the analyses."
        ),
        batch_size: common.BatchSize = 32,
        causal: bool = typer.Option(
            True, "--causal/--no-causal", help="Run the causal suite (--no-causal skips it)."
        ),
        components: common.Components = True,
        device: common.Device = None,
        dtype: common.Dtype = None,
        device_map: common.DeviceMap = None,
        trust_remote_code: common.TrustRemoteCode = False,
        trigger: common.Trigger = None,
        inference: common.Inference = "merged",
        seed: common.Seed = 0,
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Regenerate data and retrain even if present."
        ),
        quiet: common.Quiet = False,
    ) -> None:
        """Run the whole pipeline and write results.json, the figures, ANALYSIS_SUMMARY.md and
        report.html."""
        from stoplens.errors import StoplensError
        from stoplens.pipeline import RunConfig, run_pipeline
        from stoplens.rundir import RunDir

        spec = common.model_spec(
            model=model,
            adapter=adapter,
            base=base,
            device=device,
            dtype=dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
            trigger=trigger,
            inference=inference,
        )
        regs = tuple(r.strip() for r in regimes.split(",") if r.strip())
        bad = [r for r in regs if r not in ("behavioral", "knowledge")]
        if bad or not regs:
            raise StoplensError(
                f"--regimes {regimes!r}: use behavioral, knowledge or behavioral,knowledge"
            )
        opts = common.analyze_options(
            control_kind,
            batch_size,
            seed,
            quiet,
            layers=layers,
            n_pairs=n_pairs,
            causal=causal,
            components=components,
        )
        cfg = RunConfig(
            run_dir=run_dir,
            spec=spec,
            options=opts,
            train_steps=train_steps,
            regimes=regs,
            seed=seed,
            overwrite=overwrite,
        )
        run_pipeline(cfg)
        rd = RunDir(run_dir)
        if not quiet:
            print_verdicts(rd)
        typer.echo(
            f"results: {rd.results_json}\nsummary: {rd.summary_md}\nreport:  {rd.report_html}"
        )


def print_verdicts(rd) -> None:
    """The checklist from results.json, one line per check, for the terminal."""
    import json

    from rich.console import Console

    doc = json.loads(rd.results_json.read_text(encoding="utf-8"))
    console = Console()
    v = doc["verdicts"]
    console.print(f"[bold]{v.get('headline', {}).get('text') or v['overall']}[/]")
    mark = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow] n/a[/]"}
    for c in doc["verdicts"]["checks"]:
        value = (
            c["value"]
            if isinstance(c["value"], str)
            else f"{c['value']:.3g}"
            if c["value"] is not None
            else "n/a"
        )
        console.print(
            f"  {mark[c['passed']]}  {c['tier']:<9} {c['claim']} — {value}", highlight=False
        )
