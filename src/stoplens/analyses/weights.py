"""Weight-space view of a fine-tune: does it write exactly what the analyses found?

For every adapted module of every block, the update ΔW ([out, in]): for a LoRA fine-tune
B·A·scaling of each active adapter (plain LoRA; DoRA is refused), otherwise, given the base
model, W_ft - W_base. A module *writes* to the residual stream when it is the attention or MLP
output projection (`stoplens.models.arch`); then the residual-side directions of ΔW are its
left singular vectors. Any other module whose input is the residual stream *reads* from it;
its residual-side directions are the right singular vectors. For each update:

* the top singular values and the |cosine| of each top residual-side singular direction with
  the found direction r̂ (null: |cos| of a random direction, 95th percentile, ~1.96/√d);
* the share of ‖ΔW‖²_F along r̂ (writes: ‖r̂ᵀΔW‖², reads: ‖ΔW r̂‖²; null 1/d) and, given a
  k-dimensional subspace Q, inside it (null k/d).

The trigger's embedding row change (fine-tuned row minus base row, as the embedding module
returns them, so a peft trainable-token row is read correctly) is read through the same lens:
its norm, its cosine with r̂ and its share inside Q.

Owns: the update extraction and these summaries. Must not: plot or write files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.results import dataclass_dict
from stoplens.errors import StoplensError
from stoplens.models import arch


@dataclass(frozen=True)
class ModuleUpdate:
    """One module's update (see module docstring). ``cos_top`` pairs with ``singular``."""

    layer: int
    module: str
    role: str  # "write" | "read"
    frobenius: float
    singular: tuple[float, ...]
    cos_top: tuple[float, ...]
    share_along: float
    share_in_subspace: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class EmbeddingChange:
    """The trigger row: fine-tuned minus base embedding."""

    token_id: int
    norm: float
    base_norm: float
    cos_direction: float
    share_in_subspace: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class WeightView:
    """Every update, with the nulls: ``null_cos_p95`` (|cos| of a random direction),
    ``null_share`` (1/d) and ``null_share_subspace`` (k/d)."""

    source: str  # "lora" | "difference"
    reference: str
    d_model: int
    k_subspace: int | None
    null_cos_p95: float
    null_share: float
    null_share_subspace: float | None
    updates: tuple[ModuleUpdate, ...]
    embedding: EmbeddingChange | None

    def best(self, role: str = "write") -> ModuleUpdate | None:
        """The update of ``role`` whose top singular direction is most aligned with r̂."""
        rows = [u for u in self.updates if u.role == role and u.cos_top]
        return max(rows, key=lambda u: u.cos_top[0]) if rows else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        for role in ("write", "read"):
            b = self.best(role)
            d[f"best_{role}"] = None if b is None else b.to_dict()
        return d


def _lora_delta(mod: nn.Module) -> torch.Tensor | None:
    a, b = getattr(mod, "lora_A", None), getattr(mod, "lora_B", None)
    if not isinstance(a, nn.ModuleDict) or not isinstance(b, nn.ModuleDict) or not len(a):
        return None
    if any(getattr(mod, "use_dora", {}).get(k, False) for k in a):
        raise StoplensError("the weight-space view reads plain LoRA updates; DoRA is not supported")
    active = [k for k in getattr(mod, "active_adapters", list(a)) if k in a]
    delta = None
    scaling: Any = mod.scaling
    for k in active:
        wb: Any = b[k].weight
        wa: Any = a[k].weight
        d = (wb.double() @ wa.double()) * float(scaling[k])  # [out, in]
        delta = d if delta is None else delta + d
    return None if delta is None else delta.cpu()


def _leaf_linears(block: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, mod in block.named_modules():
        w = getattr(mod, "weight", None)
        if (isinstance(w, torch.Tensor) and w.ndim == 2 and "lora_" not in name
                and not name.endswith("base_layer")):  # fmt: skip
            yield name, mod


def _updates(
    model: nn.Module, base: nn.Module | None
) -> tuple[str, list[tuple[int, str, nn.Module, torch.Tensor]]]:
    """(source, [(layer, module name, module, ΔW [out, in] float64)])."""
    out: list[tuple[int, str, nn.Module, torch.Tensor]] = []
    for layer, block in enumerate(arch.get_blocks(model)):
        for name, mod in block.named_modules():
            delta = _lora_delta(mod)
            if delta is not None:
                out.append((layer, name, mod, delta))
    if out:
        return "lora", out
    if base is None:
        raise StoplensError(
            "no LoRA adapter found in the model; pass the base model to compare full weights"
        )
    for layer, (block, bblock) in enumerate(
        zip(arch.get_blocks(model), arch.get_blocks(base), strict=True)
    ):
        bmods = dict(_leaf_linears(bblock))
        for name, mod in _leaf_linears(block):
            if name in bmods:
                w = arch.linear_weight(mod).detach().double().cpu()
                wb = arch.linear_weight(bmods[name]).detach().double().cpu()
                if w.shape == wb.shape and bool((w != wb).any()):
                    out.append((layer, name, mod, w - wb))
    return "difference", out


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v.detach().double().cpu().reshape(-1)
    return v / v.norm().clamp_min(1e-30)


def _orthonormal(q: torch.Tensor | None) -> torch.Tensor | None:
    if q is None or q.numel() == 0:
        return None
    mat, _ = torch.linalg.qr(q.detach().double().cpu().reshape(-1, q.shape[-1]).t())
    return mat.t()  # [k, d]


@torch.no_grad()
def _residual_writers(model: nn.Module) -> dict[int, int]:
    """id(module) -> layer of the modules that write into the residual stream (attention
    and MLP output projections)."""
    writers: dict[int, int] = {}
    for layer in range(arch.n_layers(model)):
        for get in (arch.get_attn_out_proj, arch.get_mlp_out_proj):
            try:
                writers[id(get(model, layer))] = layer
            except StoplensError:
                continue
    return writers


def _module_update(
    layer: int,
    name: str,
    role: str,
    dw: torch.Tensor,
    r: torch.Tensor,
    q: torch.Tensor | None,
    top: int,
) -> ModuleUpdate:
    """One update ΔW read against the unit direction ``r`` and the subspace ``q``."""
    u, s, vh = torch.linalg.svd(dw, full_matrices=False)
    side = u.t() if role == "write" else vh  # residual-side directions as rows [rank, d]
    fro2 = float((s**2).sum()) or 1e-30
    proj = (r @ dw) if role == "write" else (dw @ r)
    share_q = None
    if q is not None:
        pq = (q @ dw) if role == "write" else (dw @ q.t())
        share_q = float((pq**2).sum()) / fro2
    keep = min(top, int((s > s[0] * 1e-6).sum()) if s.numel() and s[0] > 0 else 0)
    return ModuleUpdate(
        layer=layer,
        module=name,
        role=role,
        frobenius=fro2**0.5,
        singular=tuple(float(x) for x in s[:keep]),
        cos_top=tuple(float(abs(side[i] @ r)) for i in range(keep)),
        share_along=float((proj**2).sum()) / fro2,
        share_in_subspace=share_q,
    )


def _embedding_change(
    model: nn.Module, base: nn.Module, trigger_id: int, r: torch.Tensor, q: torch.Tensor | None
) -> EmbeddingChange:
    """The trigger row's change from ``base`` to ``model``, read against ``r`` and ``q``."""
    ids = torch.tensor([[trigger_id]])
    e_ft = arch.get_embed(model)(ids.to(arch.input_device(model)))[0, 0].double().cpu()
    e_b = arch.get_embed(base)(ids.to(arch.input_device(base)))[0, 0].double().cpu()
    de = e_ft - e_b
    return EmbeddingChange(
        token_id=trigger_id,
        norm=float(de.norm()),
        base_norm=float(e_b.norm()),
        cos_direction=float(_unit(de) @ r) if float(de.norm()) > 0 else 0.0,
        share_in_subspace=None
        if q is None or float(de.norm()) == 0
        else float(((q @ de) ** 2).sum() / (de @ de)),
    )


def weight_view(
    model: nn.Module,
    direction: torch.Tensor,
    *,
    base: nn.Module | None = None,
    subspace: torch.Tensor | None = None,
    trigger_id: int | None = None,
    reference: str = "the selected direction",
    top: int = 4,
    seed: int = 0,
) -> WeightView:
    """The updates of ``model`` (LoRA; or against ``base``) read against ``direction``
    ([d_model]) and ``subspace`` ([k, d], optional); the trigger row's change needs ``base``
    and ``trigger_id``."""
    d = arch.d_model(model)
    r = _unit(direction)
    if r.numel() != d:
        raise StoplensError(f"direction has {r.numel()} entries; the model's width is {d}")
    q = _orthonormal(subspace)
    source, ups = _updates(model, base)
    writers = _residual_writers(model)
    rows = []
    for layer, name, mod, dw in ups:
        role = "write" if id(mod) in writers and dw.shape[0] == d else "read"
        if role == "read" and dw.shape[1] != d:
            continue  # neither reads nor writes the residual stream (e.g. an MLP's inner map)
        rows.append(_module_update(layer, name, role, dw, r, q, top))
    emb = None
    if base is not None and trigger_id is not None:
        emb = _embedding_change(model, base, int(trigger_id), r, q)
    g = torch.Generator().manual_seed(seed)
    rnd = torch.randn(4000, d, generator=g, dtype=torch.float64)
    null_cos = np.percentile(np.abs((rnd / rnd.norm(dim=1, keepdim=True)) @ r).numpy(), 95)
    k = None if q is None else int(q.shape[0])
    return WeightView(
        source=source,
        reference=reference,
        d_model=d,
        k_subspace=k,
        null_cos_p95=float(null_cos),
        null_share=1.0 / d,
        null_share_subspace=None if k is None else k / d,
        updates=tuple(rows),
        embedding=emb,
    )
