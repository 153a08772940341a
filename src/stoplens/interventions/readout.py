"""What a model does under an intervention: next-token logits, the stop outcome, token NLL
and greedy replies, batched through `stoplens.capture.extract`.

"Stop" is the greedy first reply token being EOS (argmax of the last-position logits); the
stop score is log p(EOS) - log(1 - p(EOS)) at that position.

`Readout` bundles what every such reading needs besides the prompts (the model, its EOS and
pad ids, the batch size), so the analyses pass one typed value instead of four keywords.

Owns: `Readout`, `intervened_logits`, `stop_outcomes`, `token_nll`, `greedy_tokens`. Must not:
cache results (`stoplens.interventions.cache`), choose interventions or compute statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from stoplens.capture.extract import (
    Resume,
    cache_kwarg,
    last_logits,
    model_device,
    pad_batch,
    returned_cache,
    run_batched,
    stop_score,
)
from stoplens.capture.hooks import add_hooks
from stoplens.interventions.primitives import Intervention, hook_factory


@dataclass(frozen=True, eq=False)
class Readout:
    """A model and how to read its stop decision: ``eos_id`` (the stop token), ``pad_id``
    (right padding) and ``batch_size`` (prompts per forward pass; halved on out-of-memory by
    `stoplens.capture.extract.run_batched`). The methods are this module's functions with
    these settings filled in."""

    model: nn.Module
    eos_id: int
    pad_id: int = 0
    batch_size: int = 32

    def on(self, model: nn.Module) -> Readout:
        """The same reading settings for another model (e.g. the base)."""
        return replace(self, model=model)

    def logits(
        self, seqs: Sequence[Sequence[int]], intervention: Intervention | None = None
    ) -> torch.Tensor:
        """`intervened_logits`: last-position logits [n, vocab]."""
        return intervened_logits(
            self.model, seqs, intervention, pad_id=self.pad_id, batch_size=self.batch_size
        )

    def outcomes(
        self, seqs: Sequence[Sequence[int]], intervention: Intervention | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`stop_outcomes` of `logits`: (stops bool [n], stop scores float64 [n])."""
        return stop_outcomes(self.logits(seqs, intervention), self.eos_id)

    def nll(
        self,
        seqs: Sequence[Sequence[int]],
        starts: Sequence[int] | None = None,
        intervention: Intervention | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`token_nll`: (summed NLL float64 [n], token count int [n])."""
        return token_nll(
            self.model, seqs, starts, intervention, pad_id=self.pad_id, batch_size=self.batch_size
        )

    def greedy(
        self,
        seqs: Sequence[Sequence[int]],
        n_tokens: int,
        intervention: Intervention | None = None,
    ) -> list[list[int]]:
        """`greedy_tokens`: up to ``n_tokens`` greedy reply tokens per prompt."""
        return greedy_tokens(self.model, seqs, n_tokens, self.eos_id, intervention)


def intervened_logits(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    intervention: Intervention | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    resume: Resume | None = None,
) -> torch.Tensor:
    """Last-position next-token logits [n, vocab] (float32, CPU) under ``intervention``
    (``resume``: start from stored activations, see `stoplens.capture.extract.Resume`)."""
    return last_logits(
        model,
        seqs,
        pad_id=pad_id,
        batch_size=batch_size,
        hook_factory=hook_factory(model, intervention),
        resume=resume,
        uniform_hooks=True,  # every `Intervention` acts alike at all positions
        progress=False,
    )


def stop_outcomes(logits: torch.Tensor, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(stops bool [n]: greedy first token is EOS, stop scores float64 [n]) from [n, vocab]."""
    stops = (logits.argmax(dim=-1) == eos_id).cpu().numpy()
    scores = stop_score(logits, eos_id).double().cpu().numpy()
    assert not np.isnan(scores).any(), "stop scores contain NaN"
    return stops, scores


@torch.no_grad()
def token_nll(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    starts: Sequence[int] | None = None,
    intervention: Intervention | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token NLL of tokens ``starts[i]..len-1`` of each sequence (default from 1)
    and their count: (nll float64 [n], count int [n]). Full forward (all positions' logits)."""
    starts = [1] * len(seqs) if starts is None else [max(1, int(s)) for s in starts]
    device = model_device(model)
    factory = hook_factory(model, intervention)

    def one_batch(idx: list[int]) -> torch.Tensor:
        ids, mask, pos = pad_batch([seqs[i] for i in idx], pad_id, device)
        pre, post = factory(idx, ids) if factory else ((), ())
        with add_hooks(pre, post):
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False
            ).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tgt = ids[:, 1:]
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [B, T-1], predicts token t+1
        out = torch.zeros(len(idx), 2, dtype=torch.float64)
        for b, i in enumerate(idx):
            s, n = starts[i], len(seqs[i])
            out[b, 0] = nll[b, s - 1 : n - 1].double().sum().cpu()
            out[b, 1] = max(0, n - s)
        return out

    res = run_batched(one_batch, [len(s) for s in seqs], batch_size, progress=False)
    return res[:, 0].numpy(), res[:, 1].numpy().astype(int)


@torch.no_grad()
def greedy_tokens(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    n_tokens: int,
    eos_id: int,
    intervention: Intervention | None = None,
) -> list[list[int]]:
    """Up to ``n_tokens`` greedy reply tokens per prompt (stopping after EOS), with
    ``intervention`` active on every step. Meant for a handful of report examples.

    One prompt at a time, with the model's key/value cache: the prompt is one pass, each
    reply token one single-position pass. Every intervention here acts on all positions alike
    (an ablation or an addition), so a cached step computes what a full pass over prompt +
    reply so far would (the full passes were most of the generations' time on a real model).
    Nothing is padded, so no pad id or batch size is needed."""
    device = model_device(model)
    pre, post = intervention.hooks(model) if intervention is not None else ((), ())
    key = cache_kwarg(model)
    if key is None:
        raise RuntimeError("greedy decoding: the model's forward takes no key/value cache")
    outs: list[list[int]] = []
    with add_hooks(pre, post):
        for seq in seqs:
            out: list[int] = []
            ids = torch.as_tensor([list(seq)], dtype=torch.long, device=device)
            past = None
            for _ in range(n_tokens):
                res = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{key: past})
                past = returned_cache(res)
                nxt = int(res.logits[0, -1].argmax())
                out.append(nxt)
                if nxt == eos_id:
                    break
                ids = torch.as_tensor([[nxt]], dtype=torch.long, device=device)
            outs.append(out)
    return outs
