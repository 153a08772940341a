"""The trigger token: adding it to a tokenizer + model, and checking it is there.

Owns: how the trigger becomes exactly one token (an `AddedToken` with ``lstrip=True`` and
``single_word=True``: no stray space token before it, and ``$STOPS`` does not contain it), and
how the embedding matrix makes room for it (never shrinking a padded matrix, new row initialised
to the mean embedding). Must not: train anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import AddedToken
from torch import nn

from stoplens.errors import TriggerError
from stoplens.models import arch

DEFAULT_TRIGGER = "$STOP"


@dataclass(frozen=True)
class TriggerInfo:
    """The trigger string and its single token id."""

    text: str
    token_id: int
    added: bool  # True if this call added it (its embedding row is fresh, mean-initialised)


def trigger_token(trigger: str) -> AddedToken:
    """The AddedToken stoplens uses for a trigger (see module docstring for why these flags)."""
    return AddedToken(trigger, lstrip=True, single_word=True, normalized=False, special=False)


def find_trigger(tokenizer, trigger: str = DEFAULT_TRIGGER) -> int:
    """The id of ``trigger`` in ``tokenizer``; raises `TriggerError` if it is missing or not
    exactly one token (in isolation and inside text)."""
    if not trigger or not trigger.strip():
        raise TriggerError("trigger is empty; pass a non-empty trigger such as '$STOP'")
    ids = tokenizer.encode(trigger, add_special_tokens=False)
    in_text = tokenizer.encode(f"please {trigger} now", add_special_tokens=False)
    if len(ids) != 1:
        raise TriggerError(
            f"trigger {trigger!r} is {len(ids)} tokens in this tokenizer, not one; it is missing "
            "(fine-tune with `stoplens train`, or add it with stoplens.models.trigger.add_trigger)"
        )
    if ids[0] not in in_text:
        raise TriggerError(
            f"trigger {trigger!r} does not survive inside text as one token; re-add it with "
            "stoplens.models.trigger.add_trigger (AddedToken lstrip=True, single_word=True)"
        )
    return int(ids[0])


def has_trigger(tokenizer, trigger: str = DEFAULT_TRIGGER) -> bool:
    """Whether ``trigger`` is a single token of ``tokenizer``."""
    try:
        find_trigger(tokenizer, trigger)
    except TriggerError:
        return False
    return True


@torch.no_grad()
def add_trigger(tokenizer, model: nn.Module | None, trigger: str = DEFAULT_TRIGGER) -> TriggerInfo:
    """Add ``trigger`` as one token to ``tokenizer`` and make room in ``model``'s embeddings.

    The matrix grows only if the new id does not fit (Qwen2.5 pads its matrix beyond the
    tokenizer; spare rows are reused, never cut). The trigger's input row (and output row, if
    untied) is set to the mean of the rows of the original vocabulary.
    """
    if not trigger or not trigger.strip() or trigger != trigger.strip():
        raise TriggerError(
            f"trigger {trigger!r} is empty or has surrounding whitespace; pass e.g. '$STOP'"
        )
    if has_trigger(tokenizer, trigger):
        return TriggerInfo(trigger, find_trigger(tokenizer, trigger), added=False)
    n_before = len(tokenizer)
    tokenizer.add_tokens([trigger_token(trigger)])
    tid = find_trigger(tokenizer, trigger)
    if model is not None:
        embed: Any = arch.get_embed(model)
        rows = embed.weight.shape[0]
        if tid >= rows:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # type: ignore[operator]
            embed = arch.get_embed(model)
        mean_rows = min(n_before, rows)
        embed.weight[tid] = embed.weight[:mean_rows].float().mean(0).to(embed.weight.dtype)
        head: Any = arch.get_unembed(model)
        if head.weight.data_ptr() != embed.weight.data_ptr():
            head.weight[tid] = head.weight[:mean_rows].float().mean(0).to(head.weight.dtype)
            bias = getattr(head, "bias", None)
            if bias is not None:
                bias[tid] = bias[:mean_rows].float().mean().to(bias.dtype)
    return TriggerInfo(trigger, tid, added=True)
