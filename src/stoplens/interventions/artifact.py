"""The $STOP direction as an artifact: ``directions.safetensors`` and the API to apply it.

A file holds named entries. Each is a direction (one raw vector r, [1, d]: ablated as r̂,
added as α·r at residual[layer]) or a subspace (k orthonormal rows, [k, d]: ablated as a
whole). Its metadata (JSON in the safetensors header, key ``stoplens``) says where it was
found and how it was chosen: layer, site, position, norm, α, k, which split it was fitted on
and which it was selected on; and, file-wide, the trigger and the model identity (model type,
d_model, number of layers, name), so applying it to another model fails with a clear error.

Usage::

    from stoplens.interventions import load_directions

    art = load_directions("runs/default/artifacts/directions.safetensors")
    with art.ablate(model):               # the selected direction, projected out everywhere
        out = model(**inputs)
    with art.add(model, alpha=2.0):       # 2 r added at residual[layer], all positions
        out = model(**inputs)
    with art.ablate(model, "subspace"):   # a k-dimensional subspace
        ...

Owns: the file format (save / load) and `ablate` / `add` as context managers. Must not:
compute directions (they come from `stoplens.analyses`) or decide where files go
(`stoplens.rundir`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.capture.hooks import add_hooks
from stoplens.errors import StoplensError
from stoplens.interventions.primitives import Ablation, Addition, SubspaceAblation
from stoplens.io import atomic_write_bytes
from stoplens.models import arch

FORMAT = 1
KINDS = ("direction", "subspace")
ABLATION_SITES = "every block input, attention output and MLP output, all positions"


@dataclass(frozen=True, eq=False)
class DirectionEntry:
    """One named entry. ``vectors``: [1, d] (direction: the raw r) or [k, d] (subspace).
    ``layer``: the residual index r was measured at and where addition applies (None for a
    subspace of component writes); ``alpha``: the addition coefficient selected (directions)."""

    name: str
    kind: str
    vectors: torch.Tensor
    layer: int | None = None
    alpha: float | None = None
    position: str = "last"
    fitted_on: str = "train"
    selected_on: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StoplensError(f"entry {self.name!r}: kind must be one of {KINDS}")
        if self.vectors.ndim != 2 or (self.kind == "direction" and self.vectors.shape[0] != 1):
            raise StoplensError(
                f"entry {self.name!r}: vectors must be [1, d] for a direction or [k, d] for a "
                f"subspace, got {tuple(self.vectors.shape)}"
            )

    @property
    def k(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def norm(self) -> float:
        return float(self.vectors[0].norm()) if self.kind == "direction" else 1.0

    def ablation(self) -> Ablation | SubspaceAblation:
        v = self.vectors.float()
        return Ablation(v[0]) if self.kind == "direction" else SubspaceAblation(v)

    def addition(self, alpha: float | None = None) -> Addition:
        """α·r at residual[layer] (α: the stored one unless given)."""
        if self.kind != "direction" or self.layer is None:
            raise StoplensError(
                f"entry {self.name!r} is a {self.kind} without a layer: only a direction can be "
                "added; use ablate() for subspaces"
            )
        a = self.alpha if alpha is None else float(alpha)
        if a is None:
            raise StoplensError(f"entry {self.name!r} stores no alpha; pass alpha=...")
        return Addition(a * self.vectors[0].float(), self.layer)

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "alpha": self.alpha,
            "k": self.k,
            "norm": self.norm,
            "position": self.position,
            "fitted_on": self.fitted_on,
            "selected_on": self.selected_on,
            "ablation_sites": ABLATION_SITES,
            "addition_site": None if self.layer is None else f"residual[{self.layer}]",
            **self.info,
        }


@dataclass(frozen=True)
class DirectionArtifact:
    """Named entries plus file-wide metadata (``trigger``, ``model``: identity dict)."""

    entries: dict[str, DirectionEntry]
    trigger: str
    model: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> DirectionEntry:
        if name not in self.entries:
            raise StoplensError(
                f"no entry {name!r} in the artifact; it has {', '.join(self.entries) or 'none'}"
            )
        return self.entries[name]

    def check(self, model: nn.Module) -> None:
        """Raise `StoplensError` unless ``model`` has the width and depth the artifact was
        measured on."""
        d, depth = arch.d_model(model), arch.n_layers(model)
        want_d, want_l = self.model.get("d_model"), self.model.get("n_layers")
        if (want_d is not None and d != want_d) or (want_l is not None and depth != want_l):
            raise StoplensError(
                f"the directions were measured on a model with d_model={want_d}, "
                f"{want_l} layers ({self.model.get('name')}); this model has d_model={d}, "
                f"{depth} layers: apply them to the model they came from"
            )

    @contextmanager
    def ablate(self, model: nn.Module, name: str = "direction") -> Iterator[None]:
        """Inside the context, entry ``name`` is ablated everywhere (see module docstring)."""
        self.check(model)
        with apply(model, self[name].ablation()):
            yield

    @contextmanager
    def add(self, model: nn.Module, name: str = "direction", alpha: float | None = None):
        """Inside the context, α·r of entry ``name`` is added at its residual layer."""
        self.check(model)
        with apply(model, self[name].addition(alpha)):
            yield

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "trigger": self.trigger,
            "model": self.model,
            **self.info,
            "entries": {k: e.meta() for k, e in self.entries.items()},
        }


@contextmanager
def apply(model: nn.Module, intervention: Ablation | SubspaceAblation | Addition):
    """Install an intervention's hooks on ``model`` for the duration of the context."""
    pre, post = intervention.hooks(model)
    with add_hooks(pre, post):
        yield


def model_identity(model: nn.Module, name: str | None = None) -> dict[str, Any]:
    """What the artifact records about the model it was measured on."""
    cfg = getattr(arch.unwrap(model), "config", None)
    return {
        "name": name or getattr(cfg, "_name_or_path", None) or type(arch.unwrap(model)).__name__,
        "model_type": getattr(cfg, "model_type", None),
        "d_model": arch.d_model(model),
        "n_layers": arch.n_layers(model),
        "vocab_rows": int(arch.get_embed(model).weight.shape[0]),
    }


def save_directions(path: str | Path, artifact: DirectionArtifact) -> Path:
    """Write ``artifact`` as safetensors (tensors float32, one per entry; metadata as JSON in
    the header), atomically."""
    from safetensors.torch import save

    if not artifact.entries:
        raise StoplensError("the artifact has no entries to save")
    tensors = {
        k: e.vectors.detach().float().cpu().contiguous() for k, e in artifact.entries.items()
    }
    header = json.dumps(artifact.to_dict(), sort_keys=True, allow_nan=False)
    return atomic_write_bytes(path, save(tensors, metadata={"stoplens": header}))


def load_directions(path: str | Path) -> DirectionArtifact:
    """Read a ``directions.safetensors`` written by `save_directions`."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise StoplensError(f"{p} does not exist; `stoplens run` writes it into <run>/artifacts/")
    with safe_open(str(p), framework="pt") as f:
        header = (f.metadata() or {}).get("stoplens")
        if header is None:
            raise StoplensError(f"{p} has no stoplens metadata; it was not written by stoplens")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    doc = json.loads(header)
    if doc.get("format") != FORMAT:
        raise StoplensError(f"{p}: artifact format {doc.get('format')} is not {FORMAT}")
    entries = {}
    for name, meta in doc["entries"].items():
        known = {"kind", "layer", "alpha", "position", "fitted_on", "selected_on"}
        derived = {"k", "norm", "ablation_sites", "addition_site"}
        entries[name] = DirectionEntry(
            name=name,
            vectors=tensors[name],
            **{k: meta[k] for k in known if k in meta},
            info={k: v for k, v in meta.items() if k not in known | derived},
        )
    info = {k: v for k, v in doc.items() if k not in ("format", "trigger", "model", "entries")}
    return DirectionArtifact(entries, doc["trigger"], doc["model"], info)


def artifact_from(
    model: nn.Module,
    entries: Mapping[str, DirectionEntry],
    *,
    trigger: str,
    name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> DirectionArtifact:
    """An artifact of ``entries`` measured on ``model`` (its identity is recorded)."""
    return DirectionArtifact(dict(entries), trigger, model_identity(model, name), dict(info or {}))
