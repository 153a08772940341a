"""The option objects of the pipeline: which models (`ModelSpec`), which analyses
(`AnalyzeOptions`), the whole run (`RunConfig`), and the stage line every stage prints.

Owns: the typed options and their validation. Must not: load models, read data or run a
stage (those are the ``stage_*`` modules); import any other module of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stoplens.errors import StoplensError
from stoplens.progress import stage

ANALYSES = ("layerwise", "lowrank", "logit-lens", "diff-lens")
CONTROL_KINDS = ("word", "near_miss", "random_word", "random_vocab")
INFERENCE = ("merged", "adapter")


@dataclass(frozen=True)
class ModelSpec:
    """Which models to analyse. All None: the embedded default.

    ``model``: the fine-tuned model (a merged model dir / hub id / .gguf file), or the base
    when ``adapter`` is given. ``base``: the base model for the base-vs-fine-tuned control
    (default: ``model`` when an adapter is given). ``knowledge``: an optional second
    fine-tune (knowledge regime) of the same base, as an adapter dir or a model dir.
    ``trigger``: None means the trigger the models were trained with (their
    ``stoplens_adapter.json``), else ``$STOP``; `resolve_spec` fixes it. ``inference``:
    "merged" runs eval, analyses and causal suite on a merged copy of an adapter model (no
    extra LoRA matmuls); "adapter" on the unmerged peft model.
    """

    model: str | None = None
    adapter: str | None = None
    base: str | None = None
    knowledge: str | None = None
    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    trust_remote_code: bool = False
    trigger: str | None = None
    inference: str = "merged"

    @property
    def embedded(self) -> bool:
        return self.model is None and self.adapter is None

    @property
    def merge(self) -> bool:
        return self.inference == "merged"


@dataclass(frozen=True)
class AnalyzeOptions:
    """Options of the analyses and the causal suite."""

    only: tuple[str, ...] = ANALYSES
    control_kind: str = "word"
    layers: tuple[int, ...] | None = None
    n_pairs: int | None = None
    batch_size: int = 32
    seed: int = 0
    causal: bool = True
    components: bool = True  # the component suite after the causal suite
    checkpoints: bool = True
    progress: bool = True

    def validate(self) -> None:
        bad = [a for a in self.only if a not in ANALYSES]
        if bad:
            raise StoplensError(
                f"unknown analysis {bad[0]!r}; choose from {', '.join(ANALYSES)} (e.g. --only layerwise,logit-lens)"
            )
        if self.control_kind not in CONTROL_KINDS:
            raise StoplensError(
                f"unknown control kind {self.control_kind!r}; choose one of {', '.join(CONTROL_KINDS)}"
            )
        if self.batch_size < 1:
            raise StoplensError("--batch-size must be at least 1")
        if self.n_pairs is not None and self.n_pairs < 2:
            raise StoplensError("--n-pairs must be at least 2 (64 or more for low-rank claims)")


@dataclass(frozen=True)
class RunConfig:
    run_dir: Path = Path("runs/default")
    spec: ModelSpec = field(default_factory=ModelSpec)
    options: AnalyzeOptions = field(default_factory=AnalyzeOptions)
    train_steps: int | None = None
    regimes: tuple[str, ...] = ("behavioral",)
    seed: int = 0
    overwrite: bool = False


def log(msg: str, progress: bool) -> None:
    """One stage line (`stoplens.progress.stage`: colored on a terminal, plain in a log)."""
    stage(msg, enabled=progress)
