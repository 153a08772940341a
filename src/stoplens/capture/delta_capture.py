"""Capturing a `DeltaSet`: contrast-pair records → aligned pairs, the control-vs-control and
fixed-token null prompts, and one batched residual capture per model.

Owns: `capture_delta_set` — turning records into aligned pairs (via `stoplens.capture.encode`),
the null rows and the fixed token, one length-sorted capture pass per model over the
triggered, control, control2 and fixed-token prompts together, the sanity checks on what came
back (finite values, prompts within the context, Δ = 0 before the trigger), and the run-dir
cache (`stoplens.capture.store`). Must not: compute statistics (the analyses do) or plot.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stoplens.capture.deltaset import KINDS, RUNS, Captures, DeltaSet
from stoplens.capture.encode import EncodedPairs, encode_pairs, fixed_token_id, swap_pairs
from stoplens.capture.extract import capture_residuals
from stoplens.capture.store import ActivationCache, fingerprint, ids_fingerprint, model_fingerprint
from stoplens.errors import StoplensError
from stoplens.models import arch

_CACHE_VERSION = 2


def _context_length(model: nn.Module) -> int | None:
    cfg = getattr(arch.unwrap(model), "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _check_fits(model: nn.Module, seqs: Sequence[Sequence[int]], what: str) -> None:
    ctx = _context_length(model)
    longest = max(len(s) for s in seqs)
    if ctx is not None and longest > ctx:
        raise StoplensError(
            f"a {what} prompt is {longest} tokens, longer than the model context ({ctx}); "
            "drop or shorten long prompts in the contrast pairs"
        )
    rows = int(arch.get_embed(model).weight.shape[0])  # type: ignore[index]
    top = max(max(s) for s in seqs)
    if top >= rows:
        raise StoplensError(
            f"the {what} prompts use token id {top} but the model's embedding has {rows} rows; "
            "the model lacks the trigger: add it with stoplens.models.trigger.add_trigger"
            "(tokenizer, model) and say so (base_trigger_added=True)"
        )


def _check_finite(x: torch.Tensor, model: nn.Module, what: str) -> None:
    if not torch.isfinite(x).all():
        dtype = next(arch.unwrap(model).parameters()).dtype
        raise StoplensError(
            f"non-finite activations (NaN/inf) in the {what} capture with dtype {dtype}; "
            "this is usually float16 overflow: load the model in bfloat16 or float32"
        )


def _positions(pairs: EncodedPairs, first_k: int) -> tuple[list[list[int]], dict[str, slice]]:
    P = pairs.post_instruction
    pos = []
    for ids, tp in zip(pairs.trig_ids, pairs.trigger_pos, strict=True):
        post = list(range(len(ids) - P, len(ids)))
        pos.append([*range(first_k), max(tp - 1, 0), tp, *post])
    cuts = {
        "first": slice(0, first_k),
        "before": slice(first_k, first_k + 1),
        "trigger": slice(first_k + 1, first_k + 2),
        "post": slice(first_k + 2, first_k + 2 + P),
    }
    return pos, cuts


def _split(x: torch.Tensor, cuts: dict[str, slice]) -> Captures:
    return Captures({k: x[:, :, s].contiguous() for k, s in cuts.items()})


def _capture_model(
    model: nn.Module,
    seqs: list[list[int]],
    pos: list[list[int]],
    layers: list[int],
    cuts: dict[str, slice],
    sizes: tuple[int, ...],
    pad_id: int,
    batch_size: int,
    progress: bool,
    what: str,
) -> tuple[Captures, ...]:
    """One batched capture of the concatenated prompt sets; split back by ``sizes``."""
    x = capture_residuals(
        model, seqs, pos, layers, pad_id=pad_id, batch_size=batch_size, progress=progress, desc=what
    )
    _check_finite(x, model, what)
    bounds = np.cumsum([0, *sizes])
    return tuple(_split(x[a:b], cuts) for a, b in itertools.pairwise(bounds))


def _to_tensors(prefix: str, caps: Sequence[Captures]) -> dict[str, torch.Tensor]:
    out = {}
    for name, c in zip(RUNS, caps, strict=True):
        for k, v in c.tensors.items():
            out[f"{prefix}.{name}.{k}"] = v
    return out


def _from_tensors(prefix: str, t: dict[str, torch.Tensor]) -> tuple[Captures, ...]:
    return tuple(Captures({k: t[f"{prefix}.{name}.{k}"] for k in KINDS}) for name in RUNS)


def _before_check(trig: Captures, ctrl: Captures, pairs: EncodedPairs) -> tuple[float, int]:
    ok = [i for i, tp in enumerate(pairs.trigger_pos) if tp > 0]
    if not ok:
        return 0.0, 0
    ix = torch.as_tensor(ok)
    d = (trig.at("before")[ix] - ctrl.at("before")[ix]).abs()
    return float(d.max()), len(ok)


def _pid(rec: dict, i: int) -> str:
    return rec.get("pair_id", str(i))  # as `encode_pairs` names pairs


def capture_delta_set(
    model: nn.Module,
    tokenizer,
    trigger_id: int,
    records: Sequence[dict],
    *,
    base: nn.Module | None = None,
    base_trigger_added: bool = False,
    layers: Sequence[int] | None = None,
    random_vocab: bool = False,
    seed: int = 0,
    first_k: int = 5,
    batch_size: int = 32,
    cache_dir=None,
    progress: bool = False,
) -> DeltaSet:
    """Encode contrast-pair ``records`` and capture the residuals every analysis needs.

    Controls: each record's ``control`` (a word or a near miss, per its ``control_kind``), or a
    random ordinary vocabulary token with ``random_vocab=True`` (seeded); the null pairs use
    ``control2`` against the control (records whose control2 is missing or equals the control
    are left out of the null and counted in ``dropped``). One capture pass per model (all
    three prompt sets together, length-sorted batches). ``layers``: residual indices (default
    0..L). ``base``: the base model, same tokenizer; when its vocabulary lacked the trigger
    the caller adds it (`stoplens.models.trigger.add_trigger`) and passes
    ``base_trigger_added=True``. ``cache_dir``: reuse/save the capture there (keyed by a
    fingerprint of the models' weights, the token ids, the layers and the positions).

    Raises StoplensError when no pair aligns, a prompt exceeds the model context, a token id
    is outside a model's vocabulary, or the activations are not finite.
    """
    prompts = _prompt_sets(tokenizer, records, trigger_id, random_vocab, seed)
    layer_list = _checked_layers(model, base, layers, prompts.seqs)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    plan = _plan(prompts, layer_list, first_k, pad_id, batch_size, progress)
    got = _capture_cached(model, base, plan, prompts.pairs, prompts.ids, cache_dir)
    ft, bs = got.ft, got.base
    return DeltaSet(
        layers=tuple(layer_list),
        n_layers=arch.n_layers(model),
        d_model=int(ft[0].at("post").shape[-1]),
        trig=ft[0],
        ctrl=ft[1],
        ctrl2=ft[2],
        null_index=np.array(prompts.null_rows, dtype=np.int64),
        pairs=prompts.pairs,
        trigger_id=int(trigger_id),
        fixed=ft[3],
        fixed_index=np.arange(len(prompts.pairs), dtype=np.int64),
        fixed_token=prompts.fixed_token,
        base_trig=bs[0],
        base_ctrl=bs[1],
        base_ctrl2=bs[2],
        base_fixed=bs[3],
        base_trigger_added=base_trigger_added,
        checks=got.checks,
        dropped=prompts.dropped,
        key=got.key,
        from_cache=got.from_cache,
    )


@dataclass(frozen=True, eq=False)
class _PromptSets:
    """The aligned pairs and both nulls' prompts: the control-vs-control rows of ``pairs``
    with their second control, and the fixed token F in the trigger's place in every pair;
    ``dropped`` counts what was left out."""

    pairs: EncodedPairs
    null_rows: list[int]
    ctrl2_ids: list[list[int]]
    fixed_token: tuple[int, str]
    fixed_ids: list[list[int]]
    dropped: Counter

    @property
    def ids(self) -> tuple[list[list[int]], ...]:
        """The four prompt sets: triggered, control, control2, fixed token."""
        return (self.pairs.trig_ids, self.pairs.ctrl_ids, self.ctrl2_ids, self.fixed_ids)

    @property
    def seqs(self) -> list[list[int]]:
        """The four prompt sets concatenated, in that order (one capture pass)."""
        return [s for ids in self.ids for s in ids]


def _prompt_sets(
    tokenizer, records: Sequence[dict], trigger_id: int, random_vocab: bool, seed: int
) -> _PromptSets:
    """Encode the pairs, the control-vs-control null and the fixed-token null."""
    pairs = encode_pairs(tokenizer, records, trigger_id, random_vocab=random_vocab, seed=seed)
    dropped = Counter({f"pairs: {k}": v for k, v in pairs.dropped.items()})
    if len(pairs) == 0:
        raise StoplensError(
            f"no contrast pair could be aligned ({dict(pairs.dropped)}); check that the trigger "
            "is one token and the controls are single tokens of this tokenizer"
        )
    null_rows, ctrl2_ids = _null_pairs(tokenizer, records, pairs, trigger_id, dropped)
    f_id, f_word, fixed_ids = _fixed_pairs(tokenizer, pairs, trigger_id, null_rows, ctrl2_ids)
    return _PromptSets(pairs, null_rows, ctrl2_ids, (int(f_id), f_word), fixed_ids, dropped)


def _checked_layers(
    model: nn.Module,
    base: nn.Module | None,
    layers: Sequence[int] | None,
    seqs: Sequence[Sequence[int]],
) -> list[int]:
    """The residual indices to capture (default 0..L), sorted, after checking them and that
    both models can take the prompts (same depth, within context and vocabulary)."""
    L = arch.n_layers(model)
    layer_list = list(range(L + 1)) if layers is None else sorted({int(x) for x in layers})
    if not layer_list or layer_list[0] < 0 or layer_list[-1] > L:
        raise ValueError(f"layers must lie within 0..{L}")
    if base is not None and arch.n_layers(base) != L:
        raise StoplensError("base and fine-tuned models have different numbers of layers")
    _check_fits(model, seqs, "fine-tuned model's")
    if base is not None:
        _check_fits(base, seqs, "base model's")
    return layer_list


def _null_pairs(
    tokenizer, records: Sequence[dict], pairs: EncodedPairs, trigger_id: int, dropped: Counter
) -> tuple[list[int], list[list[int]]]:
    """(rows of ``pairs`` that have a control-vs-control null pair, the second control's
    ids for each). The second control falls back through ``control_candidates`` when
    ``control2`` does not align, leaving out the control the pair already uses (or the "null"
    would compare it to itself). Left-out records are counted in ``dropped``."""
    used = {m["pair_id"]: m["control"] for m in pairs.meta}
    null_records = [
        {
            **r,
            "control_candidates": [
                c for c in r.get("control_candidates", []) if c != used.get(_pid(r, i))
            ],
        }
        for i, r in enumerate(records)
    ]
    ctrl2 = encode_pairs(tokenizer, null_records, trigger_id, control_field="control2")
    null = swap_pairs(pairs, ctrl2)
    for k, v in null.dropped.items():
        dropped[f"null: {k}"] += v
    row_of = {m["pair_id"]: i for i, m in enumerate(pairs.meta)}
    null_rows, ctrl2_ids = [], []
    for ids, m in zip(null.trig_ids, null.meta, strict=True):
        i = row_of[m["pair_id"]]
        if ids == pairs.ctrl_ids[i]:
            dropped["null: control2 equals control"] += 1
            continue
        null_rows.append(i)
        ctrl2_ids.append(ids)
    if not null_rows:
        raise StoplensError(
            "no control-vs-control null pair: the records need a `control2` that differs from "
            "`control` (regenerate the contrast pairs with `stoplens data`)"
        )
    return null_rows, ctrl2_ids


def _fixed_pairs(
    tokenizer,
    pairs: EncodedPairs,
    trigger_id: int,
    null_rows: list[int],
    ctrl2_ids: list[list[int]],
) -> tuple[int, str, list[list[int]]]:
    """The fixed-token null: one ordinary token F in the trigger's place in every pair,
    against the same controls (token substitution at the trigger position: the same alignment
    rule as the controls' "token" alignment, so the sequences differ at exactly that
    position). Returns (F's id, F's word, the prompts' ids)."""
    taken = {s[tp] for s, tp in zip(pairs.ctrl_ids, pairs.trigger_pos, strict=True)}
    taken |= {s[pairs.trigger_pos[i]] for i, s in zip(null_rows, ctrl2_ids, strict=True)}
    f_id, f_word = fixed_token_id(tokenizer, avoid=[trigger_id, *sorted(taken)])
    fixed_ids = []
    for ids, tp in zip(pairs.trig_ids, pairs.trigger_pos, strict=True):
        f = list(ids)
        f[tp] = f_id
        fixed_ids.append(f)
    return f_id, f_word, fixed_ids


@dataclass(frozen=True)
class _Plan:
    """One capture pass: the concatenated prompt sets, their positions and how to split them."""

    seqs: list[list[int]]
    pos: list[list[int]]
    layers: list[int]
    cuts: dict[str, slice]
    sizes: tuple[int, ...]
    pad_id: int
    batch_size: int
    progress: bool


def _plan(
    prompts: _PromptSets,
    layers: list[int],
    first_k: int,
    pad_id: int,
    batch_size: int,
    progress: bool,
) -> _Plan:
    """The capture pass over the four prompt sets: the first positions (up to ``first_k``,
    within the shortest prompt), the one before the trigger, the trigger's and the
    post-instruction ones; a null row reads the positions of its pair."""
    seqs, pairs = prompts.seqs, prompts.pairs
    K = max(1, min(first_k, min(len(s) for s in seqs)))
    pos_pairs, cuts = _positions(pairs, K)
    pos = [*pos_pairs, *pos_pairs, *[pos_pairs[i] for i in prompts.null_rows], *pos_pairs]
    sizes = (len(pairs), len(pairs), len(prompts.null_rows), len(pairs))
    return _Plan(seqs, pos, layers, cuts, sizes, pad_id, batch_size, progress)


@dataclass(frozen=True, eq=False)
class _Captured:
    """What one model pair's capture gave: the fine-tuned model's captures of the four prompt
    sets, the base model's (or Nones), the sanity checks, the cache key and whether it came
    from the cache."""

    ft: tuple[Captures, ...]
    base: tuple[Captures | None, ...]
    checks: dict
    key: str
    from_cache: bool


def _capture_cached(model, base, plan: _Plan, pairs: EncodedPairs, ids, cache_dir) -> _Captured:
    """From the run-dir cache when a capture with the same fingerprint is there, else
    captured (and saved)."""
    key = ""
    cache = ActivationCache(cache_dir) if cache_dir is not None else None
    hit = None
    if cache is not None:
        key = fingerprint(
            version=_CACHE_VERSION,
            model=model_fingerprint(model),
            base=model_fingerprint(base) if base is not None else None,
            ids=ids_fingerprint(*ids),
            layers=plan.layers,
            positions=plan.pos,
        )
        hit = cache.get("deltaset", key)
    no_base: tuple[Captures | None, ...] = (None, None, None, None)
    if hit is not None:
        tensors, meta = hit
        ft = _from_tensors("ft", tensors)
        bs = _from_tensors("base", tensors) if base is not None else no_base
        return _Captured(ft, bs, meta.get("checks", {}), key, True)
    args = (plan.layers, plan.cuts, plan.sizes, plan.pad_id, plan.batch_size, plan.progress)
    ft = _capture_model(model, plan.seqs, plan.pos, *args, what="fine-tuned")
    checks: dict = {}
    checks["max_abs_delta_before_trigger"], checks["n_before_checked"] = _before_check(
        ft[0], ft[1], pairs
    )
    bs = no_base
    if base is not None:
        bcaps = _capture_model(base, plan.seqs, plan.pos, *args, what="base")
        checks["base_max_abs_delta_before_trigger"], _ = _before_check(bcaps[0], bcaps[1], pairs)
        bs = bcaps
    if cache is not None:
        tensors = _to_tensors("ft", ft)
        if base is not None:
            tensors.update(_to_tensors("base", bcaps))
        cache.put("deltaset", key, tensors, {"checks": checks, "layers": plan.layers})
    return _Captured(ft, bs, checks, key, False)
