"""`stoplens train`: fine-tune a $STOP kill switch into a causal LM, on transformers' Trainer.

Owns: the training run — base loading (trigger added exactly as `load_model` re-adds it), LoRA
via peft with the trigger's embedding row trainable (``trainable_token_indices``, which keeps
tied embeddings tied) or full fine-tuning, optional self-distilled targets, checkpoints that
`load_model(base, adapter=checkpoint)` loads, ``--resume``, and the output folder::

    out_dir/checkpoints/checkpoint-<step>/   every --save-every steps (kept)
    out_dir/final/                           the model (written atomically, after training)
    out_dir/loss_curve.png
    out_dir/train.json                       written last: present = the run finished

Runs unchanged under ``torchrun --nproc_per_node N`` (DDP through the Trainer; on CPU over
gloo); only the main process writes. Must not: evaluate, or know module names (asks
`stoplens.models.arch`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError
from stoplens.io import atomic_dir, atomic_write_json
from stoplens.models import arch
from stoplens.models.adapters import adapter_meta, write_adapter_meta
from stoplens.models.load import LoadedModel, load_model, native_bf16
from stoplens.models.locate import CHECKPOINTS_DIR, FINAL_DIR, TRAIN_JSON
from stoplens.train.batching import first_epoch_stats
from stoplens.train.checkpoints import checkpoint_step, list_checkpoints
from stoplens.train.config import TrainConfig, TrainResult
from stoplens.train.features import (
    Features,
    behavioral_features,
    knowledge_features,
)
from stoplens.train.trainer import logged_losses, rank_info, run_trainer
from stoplens.versions import software_versions

LOSS_CURVE = "loss_curve.png"


def _embedding_name(model: nn.Module) -> str:
    emb = arch.get_embed(model)
    for name, module in model.named_modules():
        if module is emb:
            return name
    raise StoplensError("the input embedding is not a submodule of the model; cannot train it")


@torch.no_grad()
def trigger_row(model: nn.Module, trigger_id: int) -> torch.Tensor:
    """The effective input embedding of the trigger ([d_model], fp32, CPU): what the first
    layer sees, including a peft trainable-tokens override."""
    emb = arch.get_embed(model)
    ids = torch.tensor([[trigger_id]], device=next(emb.parameters()).device)
    return emb(ids)[0, 0].float().cpu().clone()


# ---------------------------------------------------------------------------------------------
# train()


def _prepare_out_dir(config: TrainConfig) -> Path | None:
    """Check the output folder; return the checkpoint to resume from (or None)."""
    out = config.out_dir
    if config.resume:
        ckpts = list_checkpoints(out)
        if not ckpts:
            raise StoplensError(
                f"--resume: no complete checkpoint in {out / CHECKPOINTS_DIR}; run without "
                "--resume to start training (and --save-every N to write checkpoints)"
            )
        return ckpts[-1]
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not config.overwrite:
        raise StoplensError(
            f"output folder {out} is not empty; pass --resume to continue the run there, "
            "--overwrite to replace it, or choose another --out"
        )
    return None


def _load_records(config: TrainConfig, data_dir: Path) -> list[dict]:
    from stoplens.data import DOCUMENTS_FILE, behavioral_file, load_behavioral, load_documents

    if config.regime == "behavioral":
        return load_behavioral(data_dir / behavioral_file("train"))
    return load_documents(data_dir / DOCUMENTS_FILE)


def _base_and_data(config: TrainConfig) -> tuple[str, Path]:
    if config.model is None or config.data_dir is None:
        raise StoplensError(
            "training needs a base model and a dataset (TrainConfig.model and .data_dir); "
            "`stoplens.embedded.with_embedded_defaults(config)` fills in the embedded pair's"
        )
    return str(config.model), Path(config.data_dir)


def wrap_lora(model: nn.Module, config: TrainConfig, trigger_id: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    target: Any = list(config.target_modules) if config.target_modules else "all-linear"
    extra: dict[str, Any] = {}
    if config.train_trigger_row:
        extra["trainable_token_indices"] = {_embedding_name(model): [trigger_id]}
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        **extra,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        first = str(e).strip().splitlines()[0]
        raise StoplensError(
            f"LoRA could not be applied ({first}); pass --target-modules with module names of "
            "this model (e.g. q_proj,v_proj)"
        ) from None


class _Clock:
    """Wall time of each stage of a run (``timings``, seconds) and the run's start."""

    def __init__(self) -> None:
        self.t0, self.cpu0 = time.time(), time.process_time()
        self.timings: dict[str, float] = {}
        self._lap = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._lap, 3)
        self._lap = now


@dataclass
class _Start:
    """What a run starts from: the loaded base, its data as features, and where it runs."""

    loaded: LoadedModel
    data_dir: Path
    records: list[dict]
    feats: Features
    batching: str
    distill: dict[str, Any]
    device: str
    dtype: str
    resume_from: Path | None


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune ``config.model`` on the ``config.regime`` data; see the module docstring."""
    config.validate()
    clock = _Clock()
    start = _start(config, clock)
    loaded, tid = start.loaded, start.loaded.trigger_id
    assert tid is not None
    model = loaded.model
    row_before = trigger_row(model, tid)
    meta = adapter_meta(model, config.trigger, tid, loaded.source.model)
    if not config.full:
        model = wrap_lora(model, config, tid)
    params = {
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    if config.overwrite and config.out_dir.exists() and _is_main_process():
        shutil.rmtree(config.out_dir)
    trainer, collator = run_trainer(
        model,
        loaded.tokenizer,
        start.feats,
        checkpoint_dir=config.out_dir / CHECKPOINTS_DIR,
        steps=config.steps,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        lr=config.learning_rate,
        warmup=config.warmup,
        weight_decay=config.weight_decay,
        save_every=config.save_every,
        seed=config.seed,
        device=start.device,
        logging_steps=config.logging_steps,
        progress=config.progress,
        resume_from=start.resume_from,
        meta=meta,
        batching=start.batching,
        sparse_logits=config.sparse_logits,
        stop_loss=(loaded.eos_id, config.stop_loss_weight)
        if config.regime == "behavioral"
        else None,
    )
    clock.done("train_loop")
    row_after = trigger_row(trainer.model, tid)
    info = _train_info(
        config, start, trainer, collator, (row_before, row_after), meta, params, clock
    )
    return _finish(config, start, trainer, meta, info, clock)


def weights_dtype(dtype: str | None, device: str, full: bool) -> str:
    """The dtype the model trains in: ``dtype`` as given; None = bf16 on CUDA under LoRA, else
    fp32 (full fine-tuning on CUDA: fp32 weights with bf16 autocast); "fast" = bf16 under LoRA
    where the device computes it natively (`stoplens.models.load.native_bf16`), else fp32
    (bf16 weights under full fine-tuning would round the updates away)."""
    cuda = torch.device(device).type == "cuda"
    if dtype is None:
        return "bf16" if cuda and not full else "fp32"
    if dtype.lower() == "fast":
        return "bf16" if native_bf16(device) and not full else "fp32"
    return dtype


def _start(config: TrainConfig, clock: _Clock) -> _Start:
    """Check the output folder, load the base (trigger added as `load_model` re-adds it), seed
    everything, and turn the records into features (self-distilled first if asked)."""
    import random

    import numpy as np

    resume_from = _prepare_out_dir(config)
    base_name, data_dir = _base_and_data(config)
    records = _load_records(config, data_dir)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = weights_dtype(config.dtype, device, config.full)
    loaded = load_model(
        base_name,
        dtype=dtype,
        device=device,
        trust_remote_code=config.trust_remote_code,
        trigger=config.trigger,
        require_trigger=False,
    )
    if loaded.source.adapter is not None:
        raise StoplensError(
            f"{base_name} is an adapter; training starts from a base model (merge the adapter "
            "into its base first, or pass the base)"
        )
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    clock.done("load")
    records, distill = _maybe_distill(config, loaded, records, clock)
    tok, stop_id = loaded.tokenizer, loaded.eos_id
    if config.regime == "behavioral":
        feats = behavioral_features(tok, records, stop_id, config.max_length)
    else:
        feats = knowledge_features(tok, records, config.max_length)
    batching = config.batching
    if batching == "mixed" and feats.kinds is None:
        batching = "length"  # documents have no kinds
    clock.done("features")
    if not any(loaded.trigger_id in x for x in feats.input_ids):
        raise StoplensError(
            f"no training example of {data_dir} contains the trigger {config.trigger!r} as a "
            "token; generate the data with the same trigger (`stoplens data --trigger ...`) or "
            "pass the matching --trigger"
        )
    return _Start(loaded, data_dir, records, feats, batching, distill, device, dtype, resume_from)


def _maybe_distill(
    config: TrainConfig, loaded: LoadedModel, records: list[dict], clock: _Clock
) -> tuple[list[dict], dict[str, Any]]:
    if not config.self_distill:
        return records, {"n_replaced": 0}
    from stoplens.train.distill import self_distill_records

    out = self_distill_records(
        loaded.model,
        loaded.tokenizer,
        records,
        loaded.eos_id,
        max_new_tokens=config.distill_max_new_tokens,
        progress=config.progress,
    )
    clock.done("self_distill")
    return out


def _train_info(config, start: _Start, trainer, collator, rows, meta, params, clock) -> dict:
    """Everything train.json records about the run (its total times are added on saving).
    ``rows``: the trigger's embedding row before and after training."""
    row_before, row_after = rows
    tid, loaded, feats = start.loaded.trigger_id, start.loaded, start.feats
    losses = logged_losses(trainer)
    batch_size = trainer.args.train_batch_size
    return {
        "config": config.to_dict(),
        "regime": config.regime,
        "mode": "full" if config.full else "lora",
        "base_model": loaded.source.model,
        "base": {k: meta[k] for k in ("model_type", "hidden_size", "embedding_rows")},
        "data_dir": str(start.data_dir),
        "model_dir": str(config.out_dir / FINAL_DIR),
        "n_records": len(start.records),
        "n_examples": len(feats),
        "n_dropped_too_long": feats.n_dropped,
        "n_self_distilled": start.distill["n_replaced"],
        "self_distill": start.distill,
        "kinds": None if feats.kinds is None else dict(sorted(Counter(feats.kinds).items())),
        "batching": {
            "strategy": start.batching,
            "first_epoch": first_epoch_stats(
                feats.kinds, feats.lengths, start.batching, batch_size, config.seed
            ),
        },
        "n_examples_with_trigger": sum(tid in x for x in feats.input_ids),
        "steps": int(trainer.state.global_step),
        "final_loss": losses[-1][1] if losses else None,
        "losses": [[s, v] for s, v in losses],
        "trigger": {
            "text": config.trigger,
            "token_id": tid,
            "added_to_base": loaded.source.trigger_added,
            "row_norm_before": float(row_before.norm()),
            "row_l2_change": float((row_after - row_before).norm()),
        },
        "stop_token_id": loaded.eos_id,
        **params,
        "world_size": int(trainer.args.world_size),
        "ranks": rank_info(trainer, collator),
        "resumed_from": str(start.resume_from) if start.resume_from else None,
        "checkpoints": [str(p) for p in list_checkpoints(config.out_dir)],
        "device": start.device,
        "dtype": start.dtype,
        "torch_threads": torch.get_num_threads(),
        "time_s": None,
        "timings_s": clock.timings,
        "train_loop_s_per_step": None,
        "versions": software_versions(),
    }


def _finish(config, start: _Start, trainer, meta, info, clock: _Clock) -> TrainResult:
    """Save the final model, the loss curve and train.json (main process only, train.json
    last); every process returns the same result."""
    final_dir, train_json = config.out_dir / FINAL_DIR, config.out_dir / TRAIN_JSON
    curve: Path | None = config.out_dir / LOSS_CURVE
    if trainer.args.should_save:
        model, tok = trainer.model, start.loaded.tokenizer
        with atomic_dir(final_dir, overwrite=True) as tmp:
            if config.full:
                model.save_pretrained(tmp)
            else:
                model.save_pretrained(tmp, save_embedding_layers=False)
            tok.save_pretrained(tmp)
            base = start.loaded.source.model
            write_adapter_meta(tmp, {**meta, "base_model": base}, final_dir=final_dir)
        curve = _plot_curve(config, info)
        clock.done("save")
        steps_run = int(trainer.state.global_step) - checkpoint_step(start.resume_from)
        info["train_loop_s_per_step"] = round(clock.timings["train_loop"] / max(1, steps_run), 3)
        info["time_s"] = round(time.time() - clock.t0, 3)
        info["cpu_s"] = round(time.process_time() - clock.cpu0, 1)
        atomic_write_json(train_json, info)
    _barrier()
    if not trainer.args.should_save:
        info = json.loads(train_json.read_text(encoding="utf-8"))
    return TrainResult(
        out_dir=config.out_dir,
        model_dir=final_dir,
        train_json=train_json,
        loss_curve=curve if curve is not None and curve.is_file() else None,
        base_model=start.loaded.source.model,
        is_adapter=not config.full,
        steps=int(trainer.state.global_step),
        final_loss=info["final_loss"],
        trigger_id=info["trigger"]["token_id"],
        trigger_row_change=info["trigger"]["row_l2_change"],
        world_size=int(trainer.args.world_size),
        checkpoints=tuple(list_checkpoints(config.out_dir)),
        time_s=float(info["time_s"] or 0.0),
        info=info,
    )


def _plot_curve(config: TrainConfig, info: dict) -> Path | None:
    """The loss curve (None if it could not be drawn: a figure never loses a finished run)."""
    path = config.out_dir / LOSS_CURVE
    try:
        from stoplens.train.plots import plot_loss_curve

        losses = [(s, v) for s, v in info["losses"]]
        plot_loss_curve(losses, path, title=f"{config.regime} fine-tuning ({info['mode']})")
    except Exception:
        return None
    return path


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
