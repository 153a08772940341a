"""Reading the vocabulary: token labels, the top tokens of a vector over the vocabulary, and a
direction read through the model's final norm and unembedding.

Owns: `TokenScore`, `token_label`, `top_tokens`, `readout` (shared by the logit lens and the
activation difference lens). Must not: capture activations or judge anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stoplens.analyses.stats import jsonable
from stoplens.capture.extract import unembed


@dataclass(frozen=True)
class TokenScore:
    token_id: int
    label: str
    value: float

    def to_dict(self) -> dict:
        return jsonable({"id": self.token_id, "token": self.label, "value": self.value})


def token_label(tokenizer, token_id: int) -> str:
    """A readable label: the decoded text, repr-escaped (byte-level Ġ/Ċ become ' ' / '\\n')."""
    if token_id >= len(tokenizer):
        return f"<id {token_id}>"
    text = tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)
    return repr(text)


def top_tokens(values: np.ndarray, tokenizer, k: int, largest: bool = True) -> list[TokenScore]:
    """The ``k`` largest (or smallest) entries of ``values`` [V] as `TokenScore`s."""
    order = np.argsort(-values if largest else values, kind="stable")[:k]
    return [TokenScore(int(i), token_label(tokenizer, int(i)), float(values[i])) for i in order]


@torch.no_grad()
def readout(model: nn.Module, direction: torch.Tensor, scale: float, vocab: int) -> np.ndarray:
    """U·norm(d̂·scale) [vocab] for a direction [d] (zero direction -> U·norm(0))."""
    d = direction.double()
    nrm = d.norm()
    unit = d / nrm if nrm > 0 else d
    return unembed(model, (unit * scale).float().unsqueeze(0))[0, :vocab].double().cpu().numpy()
