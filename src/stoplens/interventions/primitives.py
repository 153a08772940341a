"""The interventions themselves (Arditi et al. 2024), as small frozen values that make hooks.

* `Ablation`: directional ablation x -> x - (x.r̂) r̂ at every block input, attention output
  and MLP output, at all positions ("is the direction necessary?");
* `SubspaceAblation`: the same for a k-dimensional span, x -> x - Q Qᵀ x;
* `Addition`: activation addition x -> x + v at residual[layer], all positions ("is it
  sufficient?").

The hook edits are `stoplens.capture.hooks`'; `random_directions` draws the null;
`intervention_key` says when two interventions are the same (for `OutcomeCache`).

Owns: these values, their hooks and identity, and the random-direction draw. Must not: run
models (`stoplens.interventions.readout`), choose directions or compute statistics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from stoplens.capture.extract import HookFactory
from stoplens.capture.hooks import (
    addition_edit,
    directional_ablation_hooks,
    residual_edit_hooks,
    subspace_ablation_hooks,
)


@dataclass(frozen=True, eq=False)
class Ablation:
    """Directional ablation of ``direction`` ([d_model], any norm) everywhere (module doc)."""

    direction: torch.Tensor

    def hooks(self, model: nn.Module):
        return directional_ablation_hooks(model, self.direction)


@dataclass(frozen=True, eq=False)
class SubspaceAblation:
    """Ablation of the span of the rows of ``basis`` ([k, d_model], any k >= 1; orthonormalised
    by the hooks) at the same sites as `Ablation`: x -> x - Q Qᵀ x."""

    basis: torch.Tensor

    def hooks(self, model: nn.Module):
        return subspace_ablation_hooks(model, self.basis)


@dataclass(frozen=True, eq=False)
class Addition:
    """Add ``vector`` ([d_model]) to residual[``layer``] at all positions."""

    vector: torch.Tensor
    layer: int

    def hooks(self, model: nn.Module):
        return residual_edit_hooks(model, self.layer, addition_edit(self.vector))


Intervention = Ablation | SubspaceAblation | Addition


def hook_factory(model: nn.Module, intervention: Intervention | None) -> HookFactory | None:
    """The same hooks for every batch (`stoplens.capture.extract`'s ``hook_factory``)."""
    if intervention is None:
        return None
    pre, post = intervention.hooks(model)
    return lambda idx, ids: (pre, post)


def unit(v: torch.Tensor) -> torch.Tensor:
    """``v`` / ‖v‖ as float32 on CPU; raises on a zero (or non-finite) norm."""
    v = v.detach().float().cpu()
    n = v.norm()
    if not torch.isfinite(n) or n < 1e-12:
        raise ValueError("direction has zero (or non-finite) norm")
    return v / n


def random_directions(d: int, n: int, seed: int) -> torch.Tensor:
    """``n`` random unit vectors in R^d, [n, d] float32, seeded (Gaussian, normalised).
    Drawn one row at a time, so the first k rows are the same for every n >= k: nulls of
    different sizes with one seed share their directions (and `OutcomeCache` entries)."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.stack([torch.randn(d, generator=g, dtype=torch.float64) for _ in range(n)])
    return (v / v.norm(dim=-1, keepdim=True)).float()


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def intervention_key(intervention: Intervention | None) -> tuple:
    """A hashable identity of an intervention: kind, layer and the exact float32 bytes of the
    vector (for an ablation, of the unit direction the hooks use). Vectors that differ in any
    bit are different interventions."""
    if intervention is None:
        return ("none",)
    if isinstance(intervention, Ablation):
        return ("ablation", _digest(unit(intervention.direction)))
    if isinstance(intervention, SubspaceAblation):
        return ("subspace", tuple(intervention.basis.shape), _digest(intervention.basis))
    return ("addition", int(intervention.layer), _digest(intervention.vector))
