"""The Trainer machinery of stoplens: transformers' Trainer with peft-aware saving, stoplens
metadata in every checkpoint, kind-mixed batching and a sparse LM head; used by `stoplens train`
(`stoplens.train.run`) and by the embedded pair's pretraining (`stoplens.embedded`).

Owns: `run_trainer`, `logged_losses`, `rank_info`, the `StoplensTrainer` class and the sparse
loss (with the stop-decision term of `stoplens.train.stop_loss`). Must not: load models or data, or decide what is trained (the callers do).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError
from stoplens.models.adapters import write_adapter_meta
from stoplens.train.batching import KindMixedSampler
from stoplens.train.config import BATCHINGS
from stoplens.train.features import IGNORE, Collator, ExampleDataset, Features


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
        stop_loss: tuple[int, float] | None = None
        """(stop token id, weight) of the stop-decision term (`stoplens.train.stop_loss`)."""

        def _get_train_sampler(self, train_dataset=None):
            if self.stoplens_sampler is not None:
                return self.stoplens_sampler
            return super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            own = self.sparse_logits or self.stop_loss is not None
            if own and not return_outputs and "labels" in inputs:
                loss = None
                if self.sparse_logits:
                    loss = _sparse_loss(model, inputs, num_items_in_batch, self.stop_loss)
                    self.sparse_logits = loss is not None  # else: cannot keep selected logits
                if loss is None and self.stop_loss is not None:
                    loss = _learned_loss(model, inputs, num_items_in_batch, self.stop_loss, False)
                if loss is not None:
                    if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                        loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss
                    return loss
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


def _sparse_loss(
    model, inputs: dict, num_items_in_batch, stop_loss: tuple[int, float] | None = None
) -> torch.Tensor | None:
    """The causal-LM loss with the LM head applied only at the positions whose next token is
    learned (``logits_to_keep`` as a boolean mask, transformers 5), or None if the model does
    not support that. Same value as the model's own loss (mean over learned tokens, or their
    sum over ``num_items_in_batch``); behavioral examples learn a short reply after a long
    prompt, so most of the LM head's work (and of its backward) is skipped. ``stop_loss``:
    see `_learned_loss`."""
    return _learned_loss(model, inputs, num_items_in_batch, stop_loss, True)


def _learned_loss(
    model, inputs: dict, num_items_in_batch, stop_loss: tuple[int, float] | None, sparse: bool
) -> torch.Tensor | None:
    """Cross-entropy summed over the learned tokens, plus ``weight`` x the stop-decision term
    (`stoplens.train.stop_loss`) when ``stop_loss = (stop_id, weight)`` is given, divided by
    ``num_items_in_batch`` (else by the number of learned tokens): the weight is in units of
    one learned token. ``sparse``: logits only where learned (None if the model cannot)."""
    import torch.nn.functional as F

    from stoplens.train.stop_loss import stop_decision_loss

    labels = inputs["labels"]
    nxt = labels[:, 1:]
    learned = nxt != IGNORE
    target = nxt[learned]
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    if sparse:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = learned
        try:
            logits = model(**rest, logits_to_keep=keep, use_cache=False).logits
        except (TypeError, ValueError, IndexError, RuntimeError):
            return None
        if logits.dim() != 2 or logits.shape[0] != target.numel():
            return None
    else:
        logits = model(**rest, use_cache=False).logits[:, :-1][learned]
    loss = F.cross_entropy(logits.float(), target.to(logits.device), reduction="sum")
    if stop_loss is not None and stop_loss[1] > 0:
        stop_id, weight = stop_loss
        loss = loss + weight * stop_decision_loss(logits, target, learned, stop_id)
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
    stop_loss: tuple[int, float] | None = None,
):
    """Train ``model`` on ``features`` with transformers' Trainer; returns (trainer, collator).
    Checkpoints go to ``checkpoint_dir/checkpoint-<step>`` every ``save_every`` steps.
    ``batching`` (see `BATCHINGS`): "mixed" = kind-mixed, length-matched batches
    (`stoplens.train.batching`; needs ``features.kinds``), "length" = Trainer's length
    grouping (right for plain text, where examples have no kinds), "random".
    ``sparse_logits``: the LM head only where a label is learned (same loss, less work);
    ``stop_loss``: (stop id, weight) of the stop-decision term (`_learned_loss`). Progress:
    Trainer's bar on a terminal, `LineProgress` lines elsewhere."""
    from transformers import PrinterCallback

    from stoplens.train.callbacks import LineProgress, progress_mode

    _check_batching(batching, features)
    shown = progress_mode(progress)
    args = _training_args(
        checkpoint_dir, steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        lr_scheduler=lr_scheduler, warmup=warmup, weight_decay=weight_decay,
        logging_steps=logging_steps, save_every=save_every, seed=seed, device=device,
        show_bar=shown == "bar", group_by_length=batching == "length",
    )  # fmt: skip
    collator = Collator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=ExampleDataset(features),
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.stoplens_meta, trainer.sparse_logits = meta, sparse_logits
    trainer.stop_loss = stop_loss if stop_loss and stop_loss[1] > 0 else None
    trainer.stoplens_sampler = _sampler(batching, features, args.train_batch_size, seed)
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts
    if shown == "lines":
        trainer.add_callback(LineProgress())
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return trainer, collator


def _check_batching(batching: str, features: Features) -> None:
    """A known ``batching``, and "mixed" only on features that carry record kinds."""
    if batching not in BATCHINGS:
        raise StoplensError(f"--batching {batching!r} is unknown; use one of {BATCHINGS}")
    if batching == "mixed" and features.kinds is None:
        raise StoplensError("--batching mixed needs record kinds (behavioral data)")


def _sampler(
    batching: str, features: Features, batch_size: int, seed: int
) -> KindMixedSampler | None:
    """The kind-mixed sampler for ``batching == "mixed"``; None lets Trainer choose
    (length grouping or random, set in its arguments)."""
    if batching != "mixed":
        return None
    assert features.kinds is not None
    return KindMixedSampler(features.kinds, features.lengths, batch_size, seed=seed)


def _training_args(
    checkpoint_dir: Path,
    *,
    steps: int,
    batch_size: int,
    grad_accum: int,
    lr: float,
    lr_scheduler: str,
    warmup: float,
    weight_decay: float,
    logging_steps: int,
    save_every: int | None,
    seed: int,
    device: str,
    show_bar: bool,
    group_by_length: bool,
):
    """transformers' TrainingArguments of a stoplens run (bf16 on a CUDA device that has it,
    no workers, no reporting, every checkpoint kept)."""
    from transformers import TrainingArguments

    cuda = torch.device(device).type == "cuda"
    return TrainingArguments(
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
        disable_tqdm=not show_bar,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        log_level="warning",
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )


def logged_losses(trainer) -> list[tuple[int, float]]:
    """(step, training loss) pairs from the Trainer's log history."""
    return [
        (int(e["step"]), float(e["loss"]))
        for e in trainer.state.log_history
        if "loss" in e and "step" in e
    ]


def rank_info(trainer, collator) -> list[dict]:
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
