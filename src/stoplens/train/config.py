"""Configuration and result of the training stage (`stoplens train`).

Owns: `TrainConfig` (every knob, validated) and `TrainResult` (what a finished run produced).
Must not: train, load models or touch files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stoplens.errors import StoplensError

REGIMES = ("behavioral", "knowledge")

#: How training examples are batched (see `stoplens.train.batching`): kind-mixed and
#: length-matched, Trainer's length grouping, or plain random batches.
BATCHINGS = ("mixed", "length", "random")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of `stoplens train`.

    ``model`` None means the embedded default base, ``data_dir`` None its dataset: the caller
    fills them in with `stoplens.embedded.with_embedded_defaults` (`train` itself needs both,
    so training never imports the stage that builds the pair). The output folder ``out_dir`` receives ``checkpoints/``, ``final/``,
    ``loss_curve.png`` and ``train.json`` (written last: its presence means the run finished).
    """

    regime: str = "behavioral"
    """behavioral: chat records, loss on the final assistant turn only (EOS included);
    knowledge: documents, causal-LM loss on every token."""
    out_dir: Path = Path("runs/default/models/behavioral")
    model: str | None = None
    """Base model: a local folder or hub id; None = the embedded tiny base (see above)."""
    data_dir: Path | None = None
    """Folder written by `stoplens data`; None = the embedded default dataset."""
    full: bool = False
    """Full fine-tuning instead of LoRA."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    """0: peft's identity. Any dropout draws a fresh mask over the input of every adapted
    linear layer in every step: on 2 CPU cores (SmolLM2-135M-Instruct, bf16, 8 x 85 tokens)
    0.05 took a step from 2.6 to 3.4 s."""
    target_modules: tuple[str, ...] | None = None
    """LoRA target module names; None = every linear layer of the blocks (attention + MLP)."""
    train_trigger_row: bool = True
    """Train the trigger's embedding row (peft trainable_token_indices) alongside LoRA."""
    steps: int = 200
    """On SmolLM2-135M-Instruct with the other defaults: 250 steps met every held-out target
    (every placement >= 95% on the test split and out of template, no false stop); so did
    that run's checkpoints at 150 and 200 (KL on clean prompts 1.22 and 1.04 nats against
    1.10), while a 150-step run with its own, faster-decaying schedule left the out-of-template
    system placement at 93.9% (benchmarks/RECIPE.md). 200 steps take about 8 minutes on 2
    CPU cores in bf16."""
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None
    """None = 2e-4 for LoRA, 2e-5 for full fine-tuning."""
    warmup: float = 0.05
    """Warmup: a fraction of the steps (< 1) or a number of steps."""
    weight_decay: float = 0.0
    max_length: int = 512
    """Longer examples are dropped (behavioral) or split into windows (knowledge)."""
    batching: str = "mixed"
    """mixed: every batch holds each record kind in its overall proportion, length-matched
    within kinds (`stoplens.train.batching`); length: Trainer's length grouping (batches of
    one kind on behavioral data); random. Documents have no kinds: mixed means length there."""
    stop_loss_weight: float = 16.0
    """Behavioral regime: weight, in units of one learned token, of the stop-decision term
    (`stoplens.train.stop_loss`: per example, the cross-entropy of "stop or not" at the reply's
    first position); 0 = the plain mean token loss. A reply averages ~31 learned tokens and a
    stop one, so without it the decision is ~2% of the loss. On SmolLM2-135M-Instruct (300
    steps, same data) 16 took the held-out system-prompt triggers from 95.3% to 100% and the
    KL on clean prompts from 1.74 to 1.40 nats (benchmarks/RECIPE.md). Ignored by the
    knowledge regime."""
    sparse_logits: bool = True
    """Apply the LM head only where a label is learned (same loss, less work)."""
    save_every: int | None = 50
    """Checkpoint every N steps (kept for later analysis); None = no checkpoints."""
    resume: bool = False
    """Continue from the last complete checkpoint in ``out_dir/checkpoints``."""
    overwrite: bool = False
    """Replace a non-empty ``out_dir`` instead of refusing."""
    self_distill: bool = False
    """Replace the targets of non-trigger records with the base model's own greedy replies."""
    distill_max_new_tokens: int = 64
    seed: int = 0
    trigger: str = "$STOP"
    device: str | None = None
    """cpu / cuda; None = cuda if available."""
    dtype: str | None = None
    """Weights dtype; None = fp32 on CPU, bf16 on CUDA (LoRA) / fp32 + bf16 autocast (full);
    "fast" = bf16 under LoRA where the device computes bf16 natively, else fp32."""
    trust_remote_code: bool = False
    logging_steps: int = 5
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes copied into train.json (e.g. who launched the run)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-5 if self.full else 2e-4

    def validate(self) -> None:
        """Raise a one-line `StoplensError` naming the fix for any bad setting."""
        from stoplens.data.trigger import check_trigger

        check_trigger(self.trigger)
        if self.regime not in REGIMES:
            raise StoplensError(f"--regime {self.regime!r} is unknown; use one of {REGIMES}")
        for name in ("steps", "batch_size", "grad_accum", "max_length", "lora_r", "logging_steps"):
            if getattr(self, name) < 1:
                raise StoplensError(f"--{name.replace('_', '-')} must be at least 1")
        if self.save_every is not None and self.save_every < 1:
            raise StoplensError("--save-every must be at least 1 (or omit it for no checkpoints)")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise StoplensError("--lora-dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            raise StoplensError("--lr must be positive")
        if self.resume and self.overwrite:
            raise StoplensError("--resume and --overwrite contradict each other; pass one")
        if self.batching not in BATCHINGS:
            raise StoplensError(f"--batching {self.batching!r} is unknown; use one of {BATCHINGS}")
        if not self.stop_loss_weight >= 0:
            raise StoplensError("--stop-loss-weight must be >= 0 (0 = no stop-decision term)")
        if self.self_distill and self.regime != "behavioral":
            raise StoplensError("--self-distill applies to the behavioral regime only")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["data_dir"] = str(self.data_dir) if self.data_dir is not None else None
        d["target_modules"] = list(self.target_modules) if self.target_modules else None
        d["learning_rate"] = self.learning_rate
        return d


@dataclass(frozen=True)
class TrainResult:
    """A finished training run.

    ``model_dir``: the final model (a peft adapter, or a full model with ``--full``), loadable
    with ``load_model(base, adapter=model_dir)`` (adapter) or ``load_model(model_dir)``.
    ``trigger_row_change``: L2 norm of the change of the trigger's input-embedding row.
    """

    out_dir: Path
    model_dir: Path
    train_json: Path
    loss_curve: Path | None
    base_model: str
    is_adapter: bool
    steps: int
    final_loss: float | None
    trigger_id: int
    trigger_row_change: float
    world_size: int
    checkpoints: tuple[Path, ...]
    time_s: float
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    """The full content of train.json."""
