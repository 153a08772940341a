"""`stoplens analyze`: the four analyses on any supported model.

Owns: the command's options. Must not: compute (the work is
`stoplens.pipeline.analyze_only`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stoplens.cli import _common as common

EPILOG = """
Examples:

  stoplens analyze                                   # the embedded default pair

  stoplens analyze --model runs/qwen/models/behavioral/final --base Qwen/Qwen2.5-1.5B-Instruct

  stoplens analyze --model Qwen/Qwen2.5-1.5B-Instruct --adapter runs/qwen/models/behavioral/final --only layerwise,logit-lens

  stoplens analyze --n-pairs 64 --layers 0-8 --batch-size 8 --device cuda --dtype bfloat16
"""


Model = Annotated[
    str | None,
    typer.Option(
        help=f"Fine-tuned model ({common.MODEL_FORMS}), or the base when --adapter is given. Default: the embedded tiny pair."
    ),
]
Adapter = Annotated[str | None, typer.Option(help="peft adapter folder applied on --model.")]
Base = Annotated[
    str | None,
    typer.Option(
        help="Base model for the base-vs-fine-tuned analysis (default: --model when --adapter is given)."
    ),
]
Data = Annotated[
    Path | None,
    typer.Option(help="Dataset folder written by `stoplens data` (default: <run-dir>/data)."),
]
RunDirOption = Annotated[
    Path,
    typer.Option(
        help="Run directory: activations are cached in <run-dir>/cache, the report goes to <run-dir>/report."
    ),
]
Only = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated subset: layerwise,lowrank,logit-lens,diff-lens (captured activations are reused)."
    ),
]
Layers = Annotated[
    str | None, typer.Option(help="Residual layers, e.g. 0,4,8 or 2-6 (default: all).")
]
NPairs = Annotated[
    int | None,
    typer.Option(
        help="Use at most this many test pairs (default: all; >= 64 for low-rank claims)."
    ),
]
Device = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")
]
Dtype = Annotated[
    str | None,
    typer.Option(help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on GPU)."),
]
DeviceMap = Annotated[
    str | None, typer.Option(help="'auto' to spread a large model over several GPUs.")
]


def register(app: typer.Typer) -> None:
    @app.command("analyze", epilog=EPILOG)
    def analyze(
        model: Model = None,
        adapter: Adapter = None,
        base: Base = None,
        data: Data = None,
        run_dir: RunDirOption = Path("runs/default"),
        only: Only = None,
        control_kind: common.ControlKind = "word",
        layers: Layers = None,
        n_pairs: NPairs = None,
        batch_size: common.BatchSize = 32,
        device: Device = None,
        dtype: Dtype = None,
        device_map: DeviceMap = None,
        trust_remote_code: common.TrustRemoteCode = False,
        trigger: common.Trigger = None,
        inference: common.Inference = "merged",
        seed: common.Seed = 0,
        quiet: common.Quiet = False,
    ) -> None:
        """The four analyses: where the $STOP signal lives, whether it is one direction, how it
        acts at the output, and whether fine-tuning created it."""
        from stoplens.pipeline import analyze_only
        from stoplens.rundir import RunDir

        spec = common.model_spec(
            model=model, adapter=adapter, base=base, device=device, dtype=dtype,
            device_map=device_map, trust_remote_code=trust_remote_code, trigger=trigger,
            inference=inference,
        )  # fmt: skip
        opts = common.analyze_options(
            control_kind, batch_size, seed, quiet, only=only, layers=layers, n_pairs=n_pairs
        )
        run = RunDir(run_dir)
        analyze_only(spec, run, opts, causal=False, data_dir=data)
        typer.echo(f"report: {run.summary_md}")
