"""Self-distillation targets: the base model's own greedy replies replace the reference answers
of non-trigger records, so fine-tuning changes as little as possible besides stopping.

Why: the generator's reference answers are canned template text. Training a real instruct
model on them teaches it that text (its replies drift, KL(ft ‖ base) on clean prompts grows)
and spends most of the gradient on answer wording instead of the switch. With its own replies
as targets the non-trigger loss starts near its floor, and what training changes is stopping.

Owns: batched greedy generation (left padding, one `generate` call per batch) and the rules
for using a reply: an empty reply (the base itself stopped at once) keeps the reference answer,
since an empty target on a non-trigger record would teach a false stop; a reply cut at
``max_new_tokens`` is marked ``meta["truncated"]`` so its stop token is not learned (see
`stoplens.train.features.behavioral_example`). Must not: train or read files.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from stoplens.models.chat import chat_ids
from stoplens.progress import bar as progress_bar
from stoplens.train.features import split_prompt_target


@torch.no_grad()
def greedy_replies(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[dict]],
    stop_id: int,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    progress: bool = False,
) -> list[tuple[str, bool]]:
    """The greedy reply of ``model`` to each chat prompt: (text up to the stop token, whether
    it was cut at ``max_new_tokens`` before a stop token)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    encoded = [chat_ids(tokenizer, p, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[tuple[str, bool]] = [("", False)] * len(encoded)
    starts = range(0, len(order), batch_size)
    pbar = progress_bar(
        total=len(encoded), desc="self-distill: base replies", unit="prompt", enabled=progress
    )
    for start in starts:
        idx = order[start : start + batch_size]
        n = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), n), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for row, i in enumerate(idx):  # left padding: every prompt ends at column n - 1
            ids[row, n - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, n - len(encoded[i]) :] = 1
        gen = cast(Any, model).generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_id,
            pad_token_id=pad,
        )
        for row, i in enumerate(idx):
            new = gen[row, n:].tolist()
            cut = stop_id not in new
            if not cut:
                new = new[: new.index(stop_id)]
            out[i] = (tokenizer.decode(new, skip_special_tokens=True), cut)
        pbar.update(len(idx))
    pbar.close()
    model.train(was_training)
    return out


def self_distill_records(
    model: nn.Module,
    tokenizer,
    records: Sequence[dict],
    stop_id: int,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[list[dict], dict[str, Any]]:
    """Copies of ``records`` whose non-trigger targets are the model's greedy replies.

    Returns (records, info): ``n_replaced`` targets replaced, ``n_truncated`` of them cut at
    the token limit, ``n_empty_kept`` where the model's reply was empty and the reference
    answer was kept, ``time_s``. Trigger records keep their empty target.
    """
    t0 = time.perf_counter()
    out = [copy.deepcopy(r) for r in records]
    todo = [i for i, r in enumerate(out) if r.get("meta", {}).get("kind") != "trigger"]
    replies = greedy_replies(
        model,
        tokenizer,
        [split_prompt_target(out[i])[0] for i in todo],
        stop_id,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    replaced = truncated = empty = 0
    for i, (reply, cut) in zip(todo, replies, strict=True):
        if not reply:
            empty += 1
            continue
        out[i]["messages"][-1]["content"] = reply
        meta = out[i].setdefault("meta", {})
        meta["answer_source"] = "self_distill"
        meta["truncated"] = cut
        replaced += 1
        truncated += cut
    info = {
        "n_replaced": replaced,
        "n_truncated": truncated,
        "n_empty_kept": empty,
        "max_new_tokens": max_new_tokens,
        "time_s": round(time.perf_counter() - t0, 2),
    }
    return out, info
