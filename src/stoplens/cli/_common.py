"""What the subcommands share: typer option types declared once, the parsers of option
text, and the builders of the pipeline's option objects.

The option types are ``Annotated`` aliases; a command sets the default in its signature,
e.g. ``batch_size: BatchSize = 32``. A command module imports them at module level (typer
reads the annotations in the module's namespace). Options whose help differs from command
to command are declared in the command itself.

Owns: shared option types and their parsing. Must not: run a stage or import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stoplens.errors import StoplensError

if TYPE_CHECKING:
    from stoplens.pipeline import AnalyzeOptions, ModelSpec

# --- every command that takes a model --------------------------------------------------------

MODEL_FORMS = "a local folder, a .gguf file (dequantised once into a cached folder) or a hub id"
Trigger = Annotated[
    str | None,
    typer.Option(
        "--trigger",
        help="The kill-switch string (any text that becomes one token). Default: the trigger "
        "the model was trained with (its stoplens_adapter.json), else $STOP.",
        show_default=False,
    ),
]
Inference = Annotated[
    str,
    typer.Option(
        "--inference",
        help="merged: run on a merged copy of a LoRA model (fast; same outputs within float "
        "tolerance); adapter: on the unmerged peft model.",
    ),
]

# --- `analyze`, `causal`, `run` --------------------------------------------------------------

ControlKind = Annotated[
    str, typer.Option(help="Controls: word, near_miss, random_word, random_vocab.")
]
BatchSize = Annotated[
    int, typer.Option(help="Starting batch size; halves automatically on out-of-memory.")
]
Seed = Annotated[int, typer.Option()]
# A bool option is a bare switch (``--quiet``), or a positive name with its negation
# (``--causal/--no-causal`` when the default is on): never ``--no-x/--no-no-x``.
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress output.")]
Components = Annotated[
    bool,
    typer.Option(
        "--components/--no-components",
        help="After the causal suite: head and MLP patching, smallest subspace, generations "
        "under intervention, weight-space view, and <run-dir>/artifacts/directions.safetensors.",
    ),
]
# `analyze` declares these four with help texts of its own.
Device = Annotated[str | None, typer.Option()]
Dtype = Annotated[str | None, typer.Option()]
DeviceMap = Annotated[str | None, typer.Option()]

# --- named flags shared by every command (a bool is a bare switch, no --no-...) -------------

RunDirFlag = Annotated[Path, typer.Option("--run-dir", help="Run directory.")]
TriggerFlag = Annotated[str, typer.Option("--trigger", help="The kill-switch string.")]
DeviceFlag = Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: auto).")]
DtypeFlag = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="bf16 / fp16 / fp32 / fast (default: fp32 on CPU, bf16 on GPU; fast: bf16 where "
        "the CPU or GPU computes it natively, else fp32).",
    ),
]
TrustRemoteCodeFlag = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code", help="Allow custom model code from the hub (off by default)."
    ),
]
TrustRemoteCode = TrustRemoteCodeFlag  # the name the analysis commands use


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """ "0,2,4" or "1-5" or "all" -> residual layer indices."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise StoplensError(
            f"--layers {text!r}: use a list like 0,4,8 or a range like 2-6"
        ) from None
    if not out or min(out) < 0:
        raise StoplensError(f"--layers {text!r}: layer indices must be >= 0")
    return tuple(sorted(set(out)))


def parse_only(text: str | None) -> tuple[str, ...]:
    from stoplens.pipeline import ANALYSES

    if text is None or text.strip().lower() in ("", "all"):
        return ANALYSES
    names = tuple(t.strip().replace("_", "-") for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise StoplensError(
            f"--only: unknown analysis {bad[0]!r}; choose from {','.join(ANALYSES)}"
        )
    return names


def check_path(path: str | None, what: str) -> None:
    """A local-looking path that does not exist is an error (hub ids look like org/name)."""
    if path is None:
        return
    p = Path(path)
    looks_local = path.startswith((".", "/", "~")) or p.exists() or path.count("/") != 1
    if looks_local and not p.expanduser().exists():
        raise StoplensError(
            f"{what} {path!r} does not exist; pass a local model folder or a hub id"
        )


def model_spec(
    *,
    model: str | None,
    adapter: str | None,
    base: str | None,
    device: str | None,
    dtype: str | None,
    device_map: str | None,
    trust_remote_code: bool,
    knowledge: str | None = None,
    trigger: str | None = None,
    inference: str = "merged",
) -> ModelSpec:
    """The pipeline's `ModelSpec` from the model options, after `check_path` on each given
    model path (keyword-only, so two path options cannot be swapped silently)."""
    from stoplens.pipeline import ModelSpec

    for path, what in (
        (model, "--model"),
        (adapter, "--adapter"),
        (base, "--base"),
        (knowledge, "--knowledge"),
    ):
        check_path(path, what)
    if trigger is not None:
        from stoplens.data.trigger import check_trigger

        check_trigger(trigger)
    if dtype is not None and dtype.lower() != "fast":
        from stoplens.models.load import parse_dtype

        parse_dtype(dtype)  # an unknown name fails here, before any stage runs
    from stoplens.pipeline import INFERENCE

    if inference not in INFERENCE:
        raise StoplensError(
            f"--inference {inference!r} is unknown; use one of {', '.join(INFERENCE)}"
        )
    return ModelSpec(
        model=model,
        adapter=adapter,
        base=base,
        knowledge=knowledge,
        device=device,
        dtype=dtype,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        trigger=trigger,
        inference=inference,
    )


def analyze_options(
    control_kind: str,
    batch_size: int,
    seed: int,
    quiet: bool,
    *,
    only: str | None = None,
    layers: str | None = None,
    n_pairs: int | None = None,
    causal: bool = True,
    components: bool = True,
    checkpoints: bool = True,
) -> AnalyzeOptions:
    """The pipeline's validated `AnalyzeOptions` from the options' text (`--only`,
    `--layers`: see `parse_only`, `parse_layers`; None means all)."""
    from stoplens.pipeline import AnalyzeOptions

    opts = AnalyzeOptions(
        only=parse_only(only),
        control_kind=control_kind,
        layers=parse_layers(layers),
        n_pairs=n_pairs,
        batch_size=batch_size,
        seed=seed,
        causal=causal,
        components=components,
        checkpoints=checkpoints,
        progress=not quiet,
    )
    opts.validate()
    return opts
