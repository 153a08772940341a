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

Owns: `Captures` and `DeltaSet` (the captured residuals by position kind, and the Δs and null
Δs read from them). Capturing them is `stoplens.capture.delta_capture`. Must not: run models,
compute statistics (the analyses do) or plot.

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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from stoplens.capture.encode import EncodedPairs

KINDS = ("first", "before", "trigger", "post")
RUNS = ("trig", "ctrl", "ctrl2", "fixed")


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
