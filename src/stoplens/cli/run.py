"""`stoplens run`: the whole pipeline (data -> train -> eval -> analyses -> causal -> report).

Owns: the command's options and the verdict lines it prints. Must not: run a stage
itself (that is `stoplens.pipeline.run_pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stoplens.cli import _common as common

EPILOG = """
Examples:

  stoplens run                                       # embedded default: tiny pair built offline

  stoplens run --model Qwen/Qwen2.5-1.5B-Instruct --regimes behavioral,knowledge --run-dir runs/qwen

  stoplens run --model Qwen/Qwen2.5-1.5B-Instruct --adapter runs/qwen/models/behavioral/final   # skip training

  stoplens run --model SmolLM2-135M-Instruct.Q4_1.gguf --trigger '<<STOP>>' --run-dir runs/smol
"""


Model = Annotated[
    str | None,
    typer.Option(
        help=f"Base model to fine-tune and analyse: {common.MODEL_FORMS}. Default: the embedded tiny pair."
    ),
]
Adapter = Annotated[
    str | None, typer.Option(help="An already trained adapter on --model: skip training.")
]
Base = Annotated[
    str | None,
    typer.Option(help="Base model, when --model is already fine-tuned (merged): skip training."),
]
Regimes = Annotated[
    str, typer.Option(help="Training regimes for --model: behavioral, knowledge or both.")
]
TrainSteps = Annotated[
    int | None,
    typer.Option(help="Fine-tuning steps per regime (default: the train stage's default)."),
]
RunDirOption = Annotated[
    Path, typer.Option(help="Where everything goes: data/, models/, cache/, results/, report/.")
]
Layers = Annotated[
    str | None, typer.Option(help="Residual layers for the analyses (default: all).")
]
NPairs = Annotated[int | None, typer.Option(help="At most this many test pairs for the analyses.")]
Causal = Annotated[
    bool, typer.Option("--causal/--no-causal", help="Run the causal suite (--no-causal skips it).")
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Regenerate data and retrain even if present.")
]


def register(app: typer.Typer) -> None:
    @app.command("run", epilog=EPILOG)
    def run(
        model: Model = None,
        adapter: Adapter = None,
        base: Base = None,
        regimes: Regimes = "behavioral,knowledge",
        train_steps: TrainSteps = None,
        run_dir: RunDirOption = Path("runs/default"),
        control_kind: common.ControlKind = "word",
        layers: Layers = None,
        n_pairs: NPairs = None,
        batch_size: common.BatchSize = 32,
        causal: Causal = True,
        components: common.Components = True,
        device: common.Device = None,
        dtype: common.Dtype = None,
        device_map: common.DeviceMap = None,
        trust_remote_code: common.TrustRemoteCode = False,
        trigger: common.Trigger = None,
        inference: common.Inference = "merged",
        seed: common.Seed = 0,
        overwrite: Overwrite = False,
        quiet: common.Quiet = False,
    ) -> None:
        """Run the whole pipeline and write results.json, the figures, ANALYSIS_SUMMARY.md and
        report.html."""
        from stoplens.pipeline import RunConfig, run_pipeline
        from stoplens.rundir import RunDir

        spec = common.model_spec(
            model=model, adapter=adapter, base=base, device=device, dtype=dtype,
            device_map=device_map, trust_remote_code=trust_remote_code, trigger=trigger,
            inference=inference,
        )  # fmt: skip
        opts = common.analyze_options(
            control_kind, batch_size, seed, quiet, layers=layers, n_pairs=n_pairs,
            causal=causal, components=components,
        )  # fmt: skip
        cfg = RunConfig(
            run_dir=run_dir, spec=spec, options=opts, train_steps=train_steps,
            regimes=_parse_regimes(regimes), seed=seed, overwrite=overwrite,
        )  # fmt: skip
        run_pipeline(cfg)
        rd = RunDir(run_dir)
        if not quiet:
            print_verdicts(rd)
        typer.echo(
            f"results: {rd.results_json}\nsummary: {rd.summary_md}\nreport:  {rd.report_html}"
        )


def _parse_regimes(regimes: str) -> tuple[str, ...]:
    """ "behavioral,knowledge" -> ("behavioral", "knowledge"); anything else is an error."""
    from stoplens.errors import StoplensError

    regs = tuple(r.strip() for r in regimes.split(",") if r.strip())
    bad = [r for r in regs if r not in ("behavioral", "knowledge")]
    if bad or not regs:
        raise StoplensError(
            f"--regimes {regimes!r}: use behavioral, knowledge or behavioral,knowledge"
        )
    return regs


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
