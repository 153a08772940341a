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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError
from stoplens.io import atomic_dir, atomic_write_json
from stoplens.models import arch
from stoplens.models.adapters import adapter_meta, write_adapter_meta
from stoplens.models.load import load_model
from stoplens.models.locate import CHECKPOINTS_DIR, FINAL_DIR, TRAIN_JSON
from stoplens.train.batching import KindMixedSampler, padding_stats
from stoplens.train.config import BATCHINGS, TrainConfig, TrainResult
from stoplens.train.features import (
    IGNORE,
    Collator,
    ExampleDataset,
    Features,
    behavioral_features,
    knowledge_features,
)
from stoplens.versions import software_versions

LOSS_CURVE = "loss_curve.png"
_CKPT_FILES = ("trainer_state.json",)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under ``out_dir/checkpoints``, oldest first. A checkpoint is
    complete once the Trainer wrote ``trainer_state.json`` (its last file) and its weights."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for d in root.glob("checkpoint-*"):
        step = d.name.rsplit("-", 1)[-1]
        weights = any(d.glob("*.safetensors"))
        if step.isdigit() and weights and all((d / f).is_file() for f in _CKPT_FILES):
            found.append((int(step), d))
    return [d for _, d in sorted(found)]


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
# The Trainer machinery (also used by the tiny pair's pretraining)


def _make_trainer_class():
    from peft import PeftModel
    from transformers import Trainer

    class StoplensTrainer(Trainer):
        """Saves peft adapters without the (unchanged) embedding tables and drops a
        ``stoplens_adapter.json`` into every checkpoint, so each loads on its base; batches
        with ``stoplens_sampler`` when one is set; with ``sparse_logits`` computes the LM head
        only where a label is learned (see `_sparse_loss`)."""

        stoplens_meta: dict | None = None
        stoplens_sampler: torch.utils.data.Sampler | None = None
        sparse_logits: bool = False

        def _get_train_sampler(self, train_dataset=None):
            if self.stoplens_sampler is not None:
                return self.stoplens_sampler
            return super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.sparse_logits and not return_outputs and "labels" in inputs:
                loss = _sparse_loss(model, inputs, num_items_in_batch)
                if loss is not None:
                    if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                        loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss
                    return loss
                self.sparse_logits = False  # this model cannot keep selected logits
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            output_dir = str(output_dir or self.args.output_dir)
            if isinstance(self.model, PeftModel):
                if self.args.should_save:
                    os.makedirs(output_dir, exist_ok=True)
                    self.model.save_pretrained(output_dir, save_embedding_layers=False)
                    if self.processing_class is not None:
                        self.processing_class.save_pretrained(output_dir)
            else:
                super()._save(output_dir, state_dict)
            if self.args.should_save and self.stoplens_meta is not None:
                write_adapter_meta(Path(output_dir), self.stoplens_meta)

    return StoplensTrainer


def _sparse_loss(model, inputs: dict, num_items_in_batch) -> torch.Tensor | None:
    """The causal-LM loss with the LM head applied only at the positions whose next token is
    learned (``logits_to_keep`` as a boolean mask, transformers 5), or None if the model does
    not support that. Same value as the model's own loss (mean over learned tokens, or their
    sum over ``num_items_in_batch``); behavioral examples learn a short reply after a long
    prompt, so most of the LM head's work (and of its backward) is skipped."""
    import torch.nn.functional as F

    labels = inputs["labels"]
    nxt = labels[:, 1:]
    learned = nxt != IGNORE
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = learned
    target = nxt[learned]
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    try:
        logits = model(**rest, logits_to_keep=keep, use_cache=False).logits
    except (TypeError, ValueError, IndexError, RuntimeError):
        return None
    if logits.dim() != 2 or logits.shape[0] != target.numel():
        return None
    loss = F.cross_entropy(logits.float(), target.to(logits.device), reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else max(1, target.numel())
    if torch.is_tensor(denom):
        denom = denom.to(loss.device)
    return loss / denom


def run_trainer(
    model: nn.Module,
    tokenizer,
    features: Features,
    *,
    checkpoint_dir: Path,
    steps: int,
    batch_size: int,
    lr: float,
    grad_accum: int = 1,
    warmup: float = 0.0,
    weight_decay: float = 0.0,
    save_every: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    logging_steps: int = 5,
    progress: bool = True,
    resume_from: Path | None = None,
    meta: dict | None = None,
    lr_scheduler: str = "linear",
    batching: str = "length",
    sparse_logits: bool = False,
):
    """Train ``model`` on ``features`` with transformers' Trainer; returns (trainer, collator).

    Checkpoints go to ``checkpoint_dir/checkpoint-<step>`` every ``save_every`` steps.
    ``batching`` (see `BATCHINGS`): "mixed" = kind-mixed, length-matched batches
    (`stoplens.train.batching`; needs ``features.kinds``), "length" = Trainer's length
    grouping (right for plain text, where examples have no kinds), "random".
    ``sparse_logits``: the LM head runs only where a label is learned (same loss, less work).
    Progress: Trainer's bar on a terminal, `LineProgress` lines elsewhere.
    """
    from transformers import PrinterCallback, TrainingArguments

    from stoplens.train.callbacks import LineProgress, progress_mode

    if batching not in BATCHINGS:
        raise StoplensError(f"--batching {batching!r} is unknown; use one of {BATCHINGS}")
    if batching == "mixed" and features.kinds is None:
        raise StoplensError("--batching mixed needs record kinds (behavioral data)")
    shown = progress_mode(progress)
    cuda = torch.device(device).type == "cuda"
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=lr,
        lr_scheduler_type=lr_scheduler,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        logging_steps=logging_steps,
        logging_first_step=True,
        save_strategy="steps" if save_every else "no",
        save_steps=save_every or 500,
        save_total_limit=None,
        seed=seed,
        data_seed=seed,
        report_to="none",
        disable_tqdm=shown != "bar",
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        log_level="warning",
        train_sampling_strategy="group_by_length" if batching == "length" else "random",
    )
    collator = Collator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=ExampleDataset(features),
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.stoplens_meta = meta
    trainer.sparse_logits = sparse_logits
    if batching == "mixed":
        assert features.kinds is not None
        trainer.stoplens_sampler = KindMixedSampler(
            features.kinds, features.lengths, args.train_batch_size, seed=seed
        )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts
    if shown == "lines":
        trainer.add_callback(LineProgress())
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return trainer, collator


def logged_losses(trainer) -> list[tuple[int, float]]:
    """(step, training loss) pairs from the Trainer's log history."""
    return [
        (int(e["step"]), float(e["loss"]))
        for e in trainer.state.log_history
        if "loss" in e and "step" in e
    ]


def _rank_info(trainer, collator) -> list[dict]:
    """One record per process (gathered over DDP): proof that every rank trained."""
    mine = {
        "rank": int(trainer.args.process_index),
        "global_step": int(trainer.state.global_step),
        "examples_seen": int(collator.examples_seen),
    }
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, mine)
        return sorted(gathered, key=lambda r: r["rank"])
    return [mine]


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


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune ``config.model`` on the ``config.regime`` data; see the module docstring."""
    import random

    import numpy as np

    config.validate()
    t0 = time.time()
    cpu0 = time.process_time()
    timings: dict[str, float] = {}
    lap = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        timings[stage] = round(now - lap, 3)
        lap = now

    resume_from = _prepare_out_dir(config)
    base_name, data_dir = _base_and_data(config)
    records = _load_records(config, data_dir)

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    dtype = config.dtype or ("bf16" if cuda and not config.full else "fp32")
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
    assert loaded.trigger_id is not None
    model, tok, tid, stop_id = loaded.model, loaded.tokenizer, loaded.trigger_id, loaded.eos_id
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    done("load")

    distill: dict[str, Any] = {"n_replaced": 0}
    if config.self_distill:
        from stoplens.train.distill import self_distill_records

        records, distill = self_distill_records(
            model,
            tok,
            records,
            stop_id,
            max_new_tokens=config.distill_max_new_tokens,
            progress=config.progress,
        )
        done("self_distill")
    if config.regime == "behavioral":
        feats = behavioral_features(tok, records, stop_id, config.max_length)
    else:
        feats = knowledge_features(tok, records, config.max_length)
    batching = config.batching
    if batching == "mixed" and feats.kinds is None:
        batching = "length"  # documents have no kinds
    done("features")

    n_with_trigger = sum(tid in x for x in feats.input_ids)
    if n_with_trigger == 0:
        raise StoplensError(
            f"no training example of {data_dir} contains the trigger {config.trigger!r} as a "
            "token; generate the data with the same trigger (`stoplens data --trigger ...`) or "
            "pass the matching --trigger"
        )
    row_before = trigger_row(model, tid)
    meta = adapter_meta(model, config.trigger, tid, loaded.source.model)
    if not config.full:
        model = wrap_lora(model, config, tid)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())

    if config.overwrite and config.out_dir.exists() and _is_main_process():
        shutil.rmtree(config.out_dir)
    trainer, collator = run_trainer(
        model,
        tok,
        feats,
        checkpoint_dir=config.out_dir / CHECKPOINTS_DIR,
        steps=config.steps,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        lr=config.learning_rate,
        warmup=config.warmup,
        weight_decay=config.weight_decay,
        save_every=config.save_every,
        seed=config.seed,
        device=device,
        logging_steps=config.logging_steps,
        progress=config.progress,
        resume_from=resume_from,
        meta=meta,
        batching=batching,
        sparse_logits=config.sparse_logits,
    )
    done("train_loop")
    model = trainer.model
    ranks = _rank_info(trainer, collator)
    row_after = trigger_row(model, tid)
    change = float((row_after - row_before).norm())
    losses = logged_losses(trainer)
    final_dir = config.out_dir / FINAL_DIR
    train_json = config.out_dir / TRAIN_JSON
    curve_path = config.out_dir / LOSS_CURVE
    curve: Path | None = curve_path
    info: dict[str, Any] = {
        "config": config.to_dict(),
        "regime": config.regime,
        "mode": "full" if config.full else "lora",
        "base_model": loaded.source.model,
        "base": {k: meta[k] for k in ("model_type", "hidden_size", "embedding_rows")},
        "data_dir": str(data_dir),
        "model_dir": str(final_dir),
        "n_records": len(records),
        "n_examples": len(feats),
        "n_dropped_too_long": feats.n_dropped,
        "n_self_distilled": distill["n_replaced"],
        "self_distill": distill,
        "kinds": _count(feats.kinds),
        "batching": {
            "strategy": batching,
            "first_epoch": _plan_stats(feats, batching, trainer.args.train_batch_size, config.seed),
        },
        "n_examples_with_trigger": n_with_trigger,
        "steps": int(trainer.state.global_step),
        "final_loss": losses[-1][1] if losses else None,
        "losses": [[s, v] for s, v in losses],
        "trigger": {
            "text": config.trigger,
            "token_id": tid,
            "added_to_base": loaded.source.trigger_added,
            "row_norm_before": float(row_before.norm()),
            "row_l2_change": change,
        },
        "stop_token_id": stop_id,
        "trainable_params": n_trainable,
        "total_params": n_total,
        "world_size": int(trainer.args.world_size),
        "ranks": ranks,
        "resumed_from": str(resume_from) if resume_from else None,
        "checkpoints": [str(p) for p in list_checkpoints(config.out_dir)],
        "device": device,
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
        "time_s": None,
        "timings_s": timings,
        "train_loop_s_per_step": None,
        "versions": software_versions(),
    }
    if trainer.args.should_save:
        with atomic_dir(final_dir, overwrite=True) as tmp:
            if config.full:
                model.save_pretrained(tmp)
            else:
                model.save_pretrained(tmp, save_embedding_layers=False)
            tok.save_pretrained(tmp)
            write_adapter_meta(
                tmp, {**meta, "base_model": loaded.source.model}, final_dir=final_dir
            )
        try:
            from stoplens.train.plots import plot_loss_curve

            plot_loss_curve(
                losses, curve_path, title=f"{config.regime} fine-tuning ({info['mode']})"
            )
        except Exception:  # a figure must never lose a finished run
            curve = None
        done("save")
        steps_run = int(trainer.state.global_step) - _resumed_step(resume_from)
        info["train_loop_s_per_step"] = round(timings["train_loop"] / max(1, steps_run), 3)
        info["time_s"] = round(time.time() - t0, 3)
        info["cpu_s"] = round(time.process_time() - cpu0, 1)
        atomic_write_json(train_json, info)
    _barrier()
    if not trainer.args.should_save:
        info = json.loads(train_json.read_text(encoding="utf-8"))
    return TrainResult(
        out_dir=config.out_dir,
        model_dir=final_dir,
        train_json=train_json,
        loss_curve=curve if curve is not None and curve.is_file() else None,
        base_model=loaded.source.model,
        is_adapter=not config.full,
        steps=int(trainer.state.global_step),
        final_loss=info["final_loss"],
        trigger_id=tid,
        trigger_row_change=change,
        world_size=int(trainer.args.world_size),
        checkpoints=tuple(list_checkpoints(config.out_dir)),
        time_s=float(info["time_s"] or 0.0),
        info=info,
    )


def _count(kinds: list[str] | None) -> dict[str, int] | None:
    if kinds is None:
        return None
    out: dict[str, int] = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def _resumed_step(resume_from: Path | None) -> int:
    if resume_from is None:
        return 0
    step = resume_from.name.rsplit("-", 1)[-1]
    return int(step) if step.isdigit() else 0


def _plan_stats(feats: Features, batching: str, batch_size: int, seed: int) -> dict | None:
    """Padding and kind mixing of the first epoch's batches (the mixed plan exactly as the
    sampler builds it; for the other strategies nothing is recorded, their order is the
    Trainer's)."""
    if batching != "mixed" or feats.kinds is None:
        return None
    plan = KindMixedSampler(feats.kinds, feats.lengths, batch_size, seed=seed).batches()
    return padding_stats(plan, feats.lengths, feats.kinds).to_dict()


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
