"""`stoplens eval`: does the kill switch work? Base and fine-tuned model side by side on the
held-out test split, and on the out-of-template set (`stoplens.data.oot`) beside it.

Owns: `evaluate` (its typed result is `stoplens.evaluate.results`) — per condition (triggered
prompts overall and per placement; clean prompts; near misses overall and per variant; distractors overall and per
variant) the greedy stop rate with a 95% Wilson CI for both models; the stop-score
distributions; KL(fine-tuned ‖ base) of next-token distributions on clean prompts (at the
decision position, and teacher-forced over the reference answers); perplexity of the clean
reference answers under both models; the acceptance check against configurable thresholds
(every placement's stop rate, and the upper 95% bound of every false-stop rate). With
``out_of_template=True`` the same measurements on the hand-written out-of-template records
are attached as ``EvalResult.out_of_template``.

Definitions. The decision position is the last position of the chat-templated prompt with
``add_generation_prompt=True``; it predicts the first reply token. A prompt *stops* when the
argmax there is the stop token (greedy decoding would emit only EOS). Stop score =
log p(EOS) − log(1 − p(EOS)) there. Both models read the same token ids (the fine-tuned
model's tokenizer). Must not: write files or plot (see `stoplens.evaluate.outputs`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from stoplens.errors import DataError, StoplensError
from stoplens.evaluate.metrics import decision_readout, kl_divergence, target_logits
from stoplens.evaluate.results import (
    AcceptanceThresholds,
    EvalResult,
    ScoreSummary,
    acceptance,
    conditions,
    record_scores,
)
from stoplens.models.chat import chat_ids
from stoplens.models.load import LoadedModel
from stoplens.progress import bar as progress_bar
from stoplens.train.features import behavioral_example, split_prompt_target

OOT_NOTE = "out-of-template: hand-written prompts (stoplens.data.oot), never used in training"


def _check_pair(ft: LoadedModel, base: LoadedModel) -> None:
    if ft.trigger_id is not None and base.trigger_id not in (None, ft.trigger_id):
        raise StoplensError(
            f"the base model's trigger id {base.trigger_id} differs from the fine-tuned model's "
            f"{ft.trigger_id}: they use different tokenizers; pass the base it was trained on"
        )
    if ft.eos_id != base.eos_id:
        raise StoplensError(
            f"base and fine-tuned model disagree on the stop token ({base.eos_id} vs "
            f"{ft.eos_id}); pass the base it was trained on"
        )


def _batches(order: Sequence[int], size: int):
    for start in range(0, len(order), size):
        yield list(order[start : start + size])


@torch.no_grad()
def evaluate(
    loaded_ft: LoadedModel,
    loaded_base: LoadedModel,
    records: Sequence[dict],
    *,
    batch_size: int = 32,
    thresholds: AcceptanceThresholds = AcceptanceThresholds(),
    progress: bool = False,
    out_of_template: bool = False,
    trigger: str | None = None,
) -> EvalResult:
    """Evaluate the kill switch on ``records`` (behavioral records, normally the test split).

    Batched: prompts are sorted by length and run ``batch_size`` at a time through both models
    (right padding; the decision position is gathered per row). Perplexity batches are half as
    large (they need logits at every answer position). ``out_of_template``: also evaluate the
    hand-written out-of-template records for ``trigger`` (default: the fine-tuned model's
    trigger token as text) and attach them as ``out_of_template``.
    """
    if not records:
        raise DataError("no records to evaluate; pass the test split written by `stoplens data`")
    if batch_size < 1:
        raise StoplensError("--batch-size must be at least 1")
    _check_pair(loaded_ft, loaded_base)
    result = _evaluate(loaded_ft, loaded_base, records, batch_size, thresholds, progress, "eval")
    if not out_of_template:
        return result
    from dataclasses import replace

    from stoplens.data.oot import oot_records

    if trigger is None:
        if loaded_ft.trigger_id is None:
            raise StoplensError("the out-of-template set needs the trigger; pass trigger=...")
        trigger = loaded_ft.tokenizer.convert_ids_to_tokens(loaded_ft.trigger_id)
    oot = _evaluate(
        loaded_ft,
        loaded_base,
        oot_records(str(trigger)),
        batch_size,
        thresholds,
        progress,
        "eval (out-of-template)",
    )
    oot.meta["set"] = OOT_NOTE
    return replace(result, out_of_template=oot)


def _evaluate(
    loaded_ft: LoadedModel,
    loaded_base: LoadedModel,
    records: Sequence[dict],
    batch_size: int,
    thresholds: AcceptanceThresholds,
    progress: bool,
    label: str,
) -> EvalResult:
    t0 = time.time()
    tok, eos = loaded_ft.tokenizer, loaded_ft.eos_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    loaded_ft.model.eval()
    loaded_base.model.eval()

    prompts = [
        chat_ids(tok, split_prompt_target(r)[0], add_generation_prompt=True) for r in records
    ]
    read = decision_readout(
        loaded_ft.model,
        loaded_base.model,
        prompts,
        eos,
        pad,
        batch_size=batch_size,
        progress=progress,
        desc=f"{label}: decision position",
    )
    recs = record_scores(records, read)
    conds = conditions(recs)
    clean_kl = np.array([r.kl for r in recs if r.kind == "clean"])
    t_decision = time.time() - t0
    ppl, kl_answer = _perplexity(
        loaded_ft, loaded_base, records, max(1, batch_size // 2), progress, label
    )
    kl_info = {
        "decision_position_clean": ScoreSummary.of(clean_kl).to_dict(),
        "answer_tokens_clean": kl_answer,
        "units": "nats",
    }
    return EvalResult(
        conditions=tuple(conds),
        records=tuple(recs),
        kl=kl_info,
        ppl=ppl,
        acceptance=acceptance(conds, thresholds),
        meta=_meta(loaded_ft, loaded_base, prompts, batch_size, thresholds, t0, t_decision),
    )


def _meta(
    loaded_ft: LoadedModel,
    loaded_base: LoadedModel,
    prompts: Sequence[Sequence[int]],
    batch_size: int,
    thresholds: AcceptanceThresholds,
    t0: float,
    t_decision: float,
) -> dict[str, Any]:
    """What an evaluation ran on and how (the models, the stop and trigger tokens, the
    thresholds, the decision rule) and its timings (``t0``: its start, ``time.time()``;
    ``t_decision``: seconds spent at the decision position)."""
    tok, eos = loaded_ft.tokenizer, loaded_ft.eos_id
    return {
        "ft": loaded_ft.source.to_dict(),
        "base": loaded_base.source.to_dict(),
        "n_records": len(prompts),
        "eos_id": eos,
        "eos_token": tok.convert_ids_to_tokens(eos),
        "trigger_id": loaded_ft.trigger_id,
        "batch_size": batch_size,
        "thresholds": thresholds.to_dict(),
        "decision": "greedy: argmax of the next-token distribution at the last prompt "
        "position (chat template, add_generation_prompt=True) is the stop token",
        "ci": "95% Wilson score interval",
        "time_s": round(time.time() - t0, 3),
        "timings_s": {
            "decision_position": round(t_decision, 2),
            "perplexity": round(time.time() - t0 - t_decision, 2),
        },
        "prompt_tokens": int(sum(len(p) for p in prompts)),
    }


def _perplexity(
    ft: LoadedModel,
    base: LoadedModel,
    records: Sequence[dict],
    batch_size: int,
    progress: bool,
    label: str = "eval",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Teacher-forced NLL of the clean reference answers (reply tokens + stop token) under both
    models, and the mean KL(ft ‖ base) over those answer positions."""
    tok, eos = ft.tokenizer, ft.eos_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    clean = [
        r
        for r in records
        if r.get("meta", {}).get("kind") == "clean" and split_prompt_target(r)[1].strip()
    ]
    if not clean:
        empty = {"base": None, "ft": None, "n_records": 0, "n_tokens": 0}
        return empty, {"mean": None, "n_tokens": 0}
    examples = [behavioral_example(tok, r, eos) for r in clean]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    nll = {"base": 0.0, "ft": 0.0}
    kl_sum, n_tok = 0.0, 0
    batches = list(_batches(order, batch_size))
    pbar = progress_bar(
        total=len(batches), desc=f"{label}: perplexity", unit="batch", enabled=progress
    )
    for idx in batches:
        pbar.update(1)
        seqs = [examples[i][0] for i in idx]
        labels = [examples[i][1] for i in idx]
        lf, tgt = target_logits(ft.model, seqs, labels, pad)
        lb, _ = target_logits(base.model, seqs, labels, pad)
        v = min(lf.shape[-1], lb.shape[-1])
        lf, lb = lf[:, :v], lb[:, :v]
        for name, lg in (("ft", lf), ("base", lb)):
            logp = torch.log_softmax(lg.double(), dim=-1)
            nll[name] += float(-logp.gather(1, tgt[:, None]).sum())
        kl_sum += float(kl_divergence(lf, lb).double().sum())
        n_tok += int(tgt.numel())
    pbar.close()
    ppl = {
        "base": float(np.exp(nll["base"] / n_tok)),
        "ft": float(np.exp(nll["ft"] / n_tok)),
        "n_records": len(clean),
        "n_tokens": n_tok,
        "what": "exp(mean NLL) of the clean reference answers (reply tokens + stop token)",
    }
    return ppl, {"mean": kl_sum / n_tok, "n_tokens": n_tok}
