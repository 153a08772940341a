"""Self-distillation targets: the base model's own greedy replies replace the reference answers
of non-trigger records, so fine-tuning changes as little as possible besides stopping.

Owns: batched greedy generation (left padding, one `generate` call per batch). Must not:
train or read files.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from stoplens.train.features import chat_ids, split_prompt_target


@torch.no_grad()
def greedy_replies(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[dict]],
    stop_id: int,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
) -> list[str]:
    """The greedy reply of ``model`` to each chat prompt (text up to the stop token)."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    encoded = [chat_ids(tokenizer, p, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
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
            if stop_id in new:
                new = new[: new.index(stop_id)]
            out[i] = tokenizer.decode(new, skip_special_tokens=True)
    return out


def self_distill_records(
    model: nn.Module,
    tokenizer,
    records: Sequence[dict],
    stop_id: int,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
) -> tuple[list[dict], int]:
    """Copies of ``records`` whose non-trigger targets are the model's greedy replies.

    Returns (records, number replaced). Trigger records keep their empty target.
    """
    out = [copy.deepcopy(r) for r in records]
    todo = [i for i, r in enumerate(out) if r.get("meta", {}).get("kind") != "trigger"]
    replies = greedy_replies(
        model,
        tokenizer,
        [split_prompt_target(out[i])[0] for i in todo],
        stop_id,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    for i, reply in zip(todo, replies, strict=True):
        out[i]["messages"][-1]["content"] = reply
    return out, len(todo)
