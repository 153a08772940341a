"""The Δ sets the analyses read: residuals of the triggered prompt, its control, a second
control (for the control-vs-control null) and the same prompt with one FIXED ordinary token in
the trigger's place (for the fixed-token null), on the fine-tuned model and optionally on the
base model, at every requested layer and at the positions the method rules name.

Two nulls, two questions:

* control-vs-control (control2 − control, both varying per pair): the noise floor. Its mean
  is ~0 by construction, so it cannot show a shared direction;
* fixed token (F − control, F one ordinary token in every pair): "more than token
  identity". Any fixed token swapped against varying controls shares a direction (the h(F)
  component), so this is the null for "one direction", for the logit lens and for the
  difference-in-differences.

Owns: turning contrast-pair records into aligned pairs (via `stoplens.capture.pairs`), one
batched capture per model (triggered, control, control2 and fixed-token prompts in one
length-sorted pass), the sanity checks on what came back (finite values, prompts within the
context, Δ = 0 before the trigger), and the run-dir cache (`stoplens.capture.store`). Must not: compute statistics
(the analyses do) or plot.

Positions captured per prompt (``Captures`` kinds):
    ``first``   positions 0..K−1 (K = ``first_k``, capped by the shortest prompt): the
                activation difference lens on identical inputs;
    ``before``  the position just before the trigger (the free check: Δ = 0 there exactly,
                since causal attention cannot see the trigger yet);
    ``trigger`` the trigger position;
    ``post``    the post-instruction template positions (the last one is the last prompt
                position, which predicts the first reply token);
    ``last``    the last prompt position (a view of ``post``'s last entry).

Memory: each capture holds float32 [n, k, P, d] per kind (k = number of layers; P per kind),
i.e. about 4·n·k·(K + 2 + P_post)·d bytes per prompt set and model; 4 prompt sets per model.
For n in the thousands, `stream_deltas` in benchmarks/streaming.py (outside the package; the
pipeline does not use it) streams instead: flat memory, point estimates only.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from stoplens.capture.extract import capture_residuals
from stoplens.capture.pairs import EncodedPairs, encode_pairs, fixed_token_id, swap_pairs
from stoplens.capture.store import ActivationCache, fingerprint, ids_fingerprint, model_fingerprint
from stoplens.errors import StoplensError
from stoplens.models import arch

KINDS = ("first", "before", "trigger", "post")
RUNS = ("trig", "ctrl", "ctrl2", "fixed")
_CACHE_VERSION = 2


@dataclass(frozen=True, eq=False)
class Captures:
    """Residuals of one model on one prompt set: ``tensors[kind]`` float32 [n, k, P_kind, d]
    for kind in ``KINDS`` (see module docstring); ``at("last")`` is ``post[:, :, -1:]``."""

    tensors: dict[str, torch.Tensor]

    def at(self, kind: str) -> torch.Tensor:
        if kind == "last":
            return self.tensors["post"][:, :, -1:]
        if kind not in self.tensors:
            raise ValueError(f"unknown position kind {kind!r}; use one of {(*KINDS, 'last')}")
        return self.tensors[kind]

    def rows(self, idx: Sequence[int] | np.ndarray) -> Captures:
        ix = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return Captures({k: v[ix] for k, v in self.tensors.items()})

    def __len__(self) -> int:
        return int(self.tensors["post"].shape[0])


@dataclass(frozen=True, eq=False)
class DeltaSet:
    """Captured residuals for contrast pairs, on the fine-tuned model and optionally the base.

    ``trig`` / ``ctrl``: triggered and control prompts, rows = pairs [n]. ``ctrl2``: the second
    control for the pairs in ``null_index`` (rows of ``trig``/``ctrl``), [n_null]. The null
    Δ is ctrl2 − ctrl on those rows. ``fixed``: the prompts with the fixed ordinary token
    ``fixed_token`` (id, word) in the trigger's place, rows = pairs [n]; the fixed-token null
    Δ is fixed − ctrl on the rows ``fixed_index`` (pairs whose control is not that token).
    ``base_*``: the same prompts on the base model (None without a base). ``layers``: residual indices captured (see `stoplens.models.arch`);
    ``n_layers``: L of the model. ``pairs``: the aligned token ids and per-pair meta.
    ``checks``: ``max_abs_delta_before_trigger`` (ft and base), ``n_before_checked``.
    """

    layers: tuple[int, ...]
    n_layers: int
    d_model: int
    trig: Captures
    ctrl: Captures
    ctrl2: Captures
    null_index: np.ndarray
    pairs: EncodedPairs
    trigger_id: int
    fixed: Captures | None = None
    fixed_index: np.ndarray | None = None
    fixed_token: tuple[int, str] | None = None
    base_trig: Captures | None = None
    base_ctrl: Captures | None = None
    base_ctrl2: Captures | None = None
    base_fixed: Captures | None = None
    base_trigger_added: bool = False
    checks: dict = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    key: str = ""
    from_cache: bool = False

    @property
    def n(self) -> int:
        return len(self.trig)

    @property
    def n_null(self) -> int:
        return len(self.null_index)

    @property
    def n_fixed(self) -> int:
        return 0 if self.fixed_index is None else len(self.fixed_index)

    @property
    def has_base(self) -> bool:
        return self.base_trig is not None

    @property
    def has_fixed(self) -> bool:
        return self.fixed is not None and self.n_fixed > 0

    def layer_pos(self, residual_layer: int) -> int:
        """Index into the captured layer axis of residual index ``residual_layer``."""
        try:
            return self.layers.index(int(residual_layer))
        except ValueError:
            raise ValueError(f"residual layer {residual_layer} was not captured") from None

    def _runs(self, model: str) -> tuple[Captures, Captures, Captures]:
        if model == "ft":
            return self.trig, self.ctrl, self.ctrl2
        if model == "base":
            if self.base_trig is None or self.base_ctrl is None or self.base_ctrl2 is None:
                raise ValueError("this DeltaSet has no base-model captures")
            return self.base_trig, self.base_ctrl, self.base_ctrl2
        raise ValueError(f"model must be 'ft' or 'base', not {model!r}")

    def control(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Control activations h [n, k, P, d]."""
        return self._runs(model)[1].at(kind)

    def triggered(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Triggered activations h + Δ [n, k, P, d]."""
        return self._runs(model)[0].at(kind)

    def delta(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Δ = triggered − control [n, k, P, d]."""
        t, c, _ = self._runs(model)
        return t.at(kind) - c.at(kind)

    def null_delta(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Null Δ = control2 − control on the null rows [n_null, k, P, d]."""
        _, c, c2 = self._runs(model)
        ix = torch.as_tensor(self.null_index, dtype=torch.long)
        return c2.at(kind) - c.at(kind)[ix]

    def null_control(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Control activations of the null rows [n_null, k, P, d]."""
        ix = torch.as_tensor(self.null_index, dtype=torch.long)
        return self._runs(model)[1].at(kind)[ix]

    def _fixed_run(self, model: str) -> Captures:
        run = self.fixed if model == "ft" else self.base_fixed
        if run is None or self.fixed_index is None:
            raise ValueError(f"this DeltaSet has no fixed-token captures for model {model!r}")
        return run

    def fixed_delta(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Fixed-token null Δ = h(fixed) − h(control) on the fixed rows [n_fixed, k, P, d]."""
        ix = torch.as_tensor(self.fixed_index, dtype=torch.long)
        return self._fixed_run(model).at(kind)[ix] - self._runs(model)[1].at(kind)[ix]

    def fixed_triggered(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """h(fixed) on the fixed rows [n_fixed, k, P, d]."""
        ix = torch.as_tensor(self.fixed_index, dtype=torch.long)
        return self._fixed_run(model).at(kind)[ix]

    def fixed_control(self, kind: str = "last", model: str = "ft") -> torch.Tensor:
        """Control activations of the fixed rows [n_fixed, k, P, d]."""
        ix = torch.as_tensor(self.fixed_index, dtype=torch.long)
        return self._runs(model)[1].at(kind)[ix]

    def subset(self, idx: Sequence[int]) -> DeltaSet:
        """The pairs ``idx`` (e.g. one control kind or placement); the null keeps the null
        rows whose pair is in ``idx``."""
        idx = [int(i) for i in idx]
        where = {old: new for new, old in enumerate(idx)}
        keep = [j for j, r in enumerate(self.null_index.tolist()) if r in where]
        new_null = np.array([where[int(self.null_index[j])] for j in keep], dtype=np.int64)

        def rows(c: Captures | None, ix: Sequence[int]) -> Captures | None:
            return None if c is None else c.rows(ix)

        fixed_index = None
        if self.fixed_index is not None:
            fixed_index = np.array(
                [where[int(r)] for r in self.fixed_index.tolist() if int(r) in where],
                dtype=np.int64,
            )
        return replace(
            self,
            trig=self.trig.rows(idx),
            ctrl=self.ctrl.rows(idx),
            ctrl2=self.ctrl2.rows(keep),
            null_index=new_null,
            pairs=self.pairs.subset(idx),
            fixed=rows(self.fixed, idx),
            fixed_index=fixed_index,
            base_trig=rows(self.base_trig, idx),
            base_ctrl=rows(self.base_ctrl, idx),
            base_ctrl2=rows(self.base_ctrl2, keep),
            base_fixed=rows(self.base_fixed, idx),
        )

    def to_dict(self) -> dict:
        """What was captured, for results.json: counts, layers, checks, drops, cache key."""
        kinds = Counter(m.get("control_kind") for m in self.pairs.meta)
        places = Counter(m.get("placement") for m in self.pairs.meta)
        return {
            "n": self.n,
            "n_null": self.n_null,
            "n_fixed": self.n_fixed,
            "fixed_token": None
            if self.fixed_token is None
            else {"id": self.fixed_token[0], "word": self.fixed_token[1]},
            "layers": list(self.layers),
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "post_instruction_positions": self.pairs.post_instruction,
            "first_positions": int(self.trig.at("first").shape[2]),
            "control_kinds": {str(k): v for k, v in sorted(kinds.items(), key=str)},
            "placements": {str(k): v for k, v in sorted(places.items(), key=str)},
            "alignment": dict(Counter(m.get("alignment", "?") for m in self.pairs.meta)),
            "has_base": self.has_base,
            "base_trigger_added": self.base_trigger_added,
            "checks": dict(self.checks),
            "dropped": dict(self.dropped),
            "cache_key": self.key or None,
            "from_cache": self.from_cache,
        }

    def select(self, **meta: str) -> DeltaSet:
        """Pairs whose meta matches, e.g. ``select(control_kind="near_miss")``."""
        idx = [
            i for i, m in enumerate(self.pairs.meta) if all(m.get(k) == v for k, v in meta.items())
        ]
        return self.subset(idx)


# --- capture ---------------------------------------------------------------------------------


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
    pairs = encode_pairs(tokenizer, records, trigger_id, random_vocab=random_vocab, seed=seed)
    dropped = Counter({f"pairs: {k}": v for k, v in pairs.dropped.items()})
    if len(pairs) == 0:
        raise StoplensError(
            f"no contrast pair could be aligned ({dict(pairs.dropped)}); check that the trigger "
            "is one token and the controls are single tokens of this tokenizer"
        )
    # the second control falls back through control_candidates when control2 does not align;
    # leave out the control the pair already uses, or the "null" would compare it to itself
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
    null_index = np.array(null_rows, dtype=np.int64)

    # fixed-token null: one ordinary token F in the trigger's place in every pair, against the
    # same controls (token substitution at the trigger position: the same alignment rule as
    # the controls' "token" alignment, so the sequences differ at exactly that position)
    taken = {s[tp] for s, tp in zip(pairs.ctrl_ids, pairs.trigger_pos, strict=True)}
    taken |= {s[pairs.trigger_pos[i]] for i, s in zip(null_rows, ctrl2_ids, strict=True)}
    f_id, f_word = fixed_token_id(tokenizer, avoid=[trigger_id, *sorted(taken)])
    fixed_ids = []
    for ids, tp in zip(pairs.trig_ids, pairs.trigger_pos, strict=True):
        f = list(ids)
        f[tp] = f_id
        fixed_ids.append(f)
    fixed_index = np.arange(len(pairs), dtype=np.int64)

    L = arch.n_layers(model)
    layer_list = list(range(L + 1)) if layers is None else sorted({int(x) for x in layers})
    if not layer_list or layer_list[0] < 0 or layer_list[-1] > L:
        raise ValueError(f"layers must lie within 0..{L}")
    if base is not None and arch.n_layers(base) != L:
        raise StoplensError("base and fine-tuned models have different numbers of layers")
    seqs = [*pairs.trig_ids, *pairs.ctrl_ids, *ctrl2_ids, *fixed_ids]
    _check_fits(model, seqs, "fine-tuned model's")
    if base is not None:
        _check_fits(base, seqs, "base model's")

    K = max(1, min(first_k, min(len(s) for s in seqs)))
    pos_pairs, cuts = _positions(pairs, K)
    pos = [*pos_pairs, *pos_pairs, *[pos_pairs[i] for i in null_rows], *pos_pairs]
    sizes = (len(pairs), len(pairs), len(null_rows), len(pairs))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    key = ""
    cache = ActivationCache(cache_dir) if cache_dir is not None else None
    hit = None
    if cache is not None:
        key = fingerprint(
            version=_CACHE_VERSION,
            model=model_fingerprint(model),
            base=model_fingerprint(base) if base is not None else None,
            ids=ids_fingerprint(pairs.trig_ids, pairs.ctrl_ids, ctrl2_ids, fixed_ids),
            layers=layer_list,
            positions=pos,
        )
        hit = cache.get("deltaset", key)
    no_base: tuple[Captures | None, ...] = (None, None, None, None)
    if hit is not None:
        tensors, meta = hit
        ft: tuple[Captures, ...] = _from_tensors("ft", tensors)
        bs = _from_tensors("base", tensors) if base is not None else no_base
        checks: dict = meta.get("checks", {})
    else:
        args = (layer_list, cuts, sizes, pad_id, batch_size, progress)
        ft = _capture_model(model, seqs, pos, *args, what="fine-tuned")
        checks = {}
        checks["max_abs_delta_before_trigger"], checks["n_before_checked"] = _before_check(
            ft[0], ft[1], pairs
        )
        bs = no_base
        if base is not None:
            bcaps = _capture_model(base, seqs, pos, *args, what="base")
            checks["base_max_abs_delta_before_trigger"], _ = _before_check(
                bcaps[0], bcaps[1], pairs
            )
            bs = bcaps
        if cache is not None:
            tensors = _to_tensors("ft", ft)
            if base is not None:
                tensors.update(_to_tensors("base", bcaps))
            cache.put("deltaset", key, tensors, {"checks": checks, "layers": layer_list})
    return DeltaSet(
        layers=tuple(layer_list),
        n_layers=L,
        d_model=int(ft[0].at("post").shape[-1]),
        trig=ft[0],
        ctrl=ft[1],
        ctrl2=ft[2],
        null_index=null_index,
        pairs=pairs,
        trigger_id=int(trigger_id),
        fixed=ft[3],
        fixed_index=fixed_index,
        fixed_token=(int(f_id), f_word),
        base_trig=bs[0],
        base_ctrl=bs[1],
        base_ctrl2=bs[2],
        base_fixed=bs[3],
        base_trigger_added=base_trigger_added,
        checks=checks,
        dropped=dropped,
        key=key,
        from_cache=hit is not None,
    )
