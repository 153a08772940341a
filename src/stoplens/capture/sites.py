"""Component sites: where an attention head's or an MLP's output can be read and replaced.

A head (l, h) is slice h of the *input* of block l's attention output projection, viewed as
[.., n_heads, head_dim]: under grouped-query attention several query heads share keys and
values, but each still has its own slice there. An MLP l is its term in the residual stream:
the MLP's output, after the post-norm in families that have one (`arch.get_mlp_out`; patching
either is the same intervention, and the write read there is exact). Module lookups are
`stoplens.models.arch`'s.

Owns: `Component`, the site reading / patching hooks and `capture_sites` (batched site
activations at chosen positions). Must not: run analyses or compute statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from stoplens.capture.extract import model_device, pad_batch, run_batched
from stoplens.capture.hooks import (
    add_hooks,
    edit_input,
    edit_output,
    input_hidden,
    output_hidden,
    patch_edit,
)
from stoplens.models import arch


@dataclass(frozen=True)
class Component:
    """An attention head (``head`` set) or an MLP (``head`` None) of block ``layer``."""

    layer: int
    head: int | None = None

    @property
    def kind(self) -> str:
        return "mlp" if self.head is None else "head"

    @property
    def name(self) -> str:
        return f"MLP{self.layer}" if self.head is None else f"L{self.layer}H{self.head}"

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key: by block, heads (in order) before the block's MLP."""
        return (self.layer, 1 if self.head is None else 0, self.head or 0)

    @property
    def site(self) -> tuple[str, int]:
        return ("mlp" if self.head is None else "attn", self.layer)

    @staticmethod
    def parse(name: str) -> Component:
        if name.startswith("MLP"):
            return Component(int(name[3:]))
        layer, head = name[1:].split("H")
        return Component(int(layer), int(head))


def all_components(model: nn.Module) -> tuple[Component, ...]:
    """Every head of every block, then every MLP: L * (n_heads + 1) components."""
    L, H = arch.n_layers(model), arch.n_heads(model)
    heads = [Component(layer, h) for layer in range(L) for h in range(H)]
    return (*heads, *(Component(layer) for layer in range(L)))


Site = tuple[str, int]  # ("attn", l): o_proj input [.., H * hd]; ("mlp", l): MLP output [.., d]


def site_module(model: nn.Module, site: Site) -> nn.Module:
    kind, layer = site
    return (
        arch.get_attn_out_proj(model, layer) if kind == "attn" else arch.get_mlp_out(model, layer)
    )


def read_site_hooks(model: nn.Module, sites: Sequence[Site], store: dict[Site, torch.Tensor]):
    """(pre_hooks, hooks) that put each site's activation [B, T, width] into ``store``."""
    pre, post = [], []
    for site in sites:
        mod = site_module(model, site)
        if site[0] == "attn":

            def pre_fn(module, args, kwargs, site=site):
                store[site] = input_hidden(args, kwargs)

            pre.append((mod, pre_fn))
        else:

            def post_fn(module, args, kwargs, output, site=site):
                store[site] = output_hidden(output)

            post.append((mod, post_fn))
    return pre, post


class StopForward(Exception):
    """Raised after the last block needed, to skip the rest of the forward pass."""


def stop_after(model: nn.Module, layer: int, keep: dict[str, torch.Tensor] | None = None):
    """A forward hook on block ``layer`` that (optionally keeps its output and) stops."""

    def hook(module, args, kwargs, output):
        if keep is not None:
            keep["out"] = output_hidden(output)
        raise StopForward

    return (arch.get_blocks(model)[layer], hook)


@torch.no_grad()
def capture_sites(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    sites: Sequence[Site],
    *,
    pad_id: int = 0,
    batch_size: int = 32,
) -> dict[Site, torch.Tensor]:
    """Component-site activations at chosen positions (P per sequence, equal P), one forward
    pass per batch stopped after the last block needed: site -> float32 [n, P, width] (CPU)."""
    sites = sorted(set(sites))
    device = model_device(model)
    last = max(layer for _, layer in sites)

    def one_batch(idx: list[int]) -> torch.Tensor:
        ids, mask, pos_ids = pad_batch([seqs[i] for i in idx], pad_id, device)
        pos = torch.as_tensor([list(positions[i]) for i in idx], dtype=torch.long)
        store: dict[Site, torch.Tensor] = {}
        pre, post = read_site_hooks(model, sites, store)
        with add_hooks(pre, [*post, stop_after(model, last)]), contextlib.suppress(StopForward):
            model(input_ids=ids, attention_mask=mask, position_ids=pos_ids, use_cache=False)
        b = torch.arange(len(idx)).unsqueeze(1)
        return torch.cat([store[s][b, pos.to(store[s].device)].float().cpu() for s in sites], -1)

    flat = run_batched(one_batch, [len(s) for s in seqs], batch_size, progress=False)
    out, start = {}, 0
    for s in sites:
        width = int(arch.linear_weight(site_module(model, s)).shape[1]) if s[0] == "attn" else 0
        width = width or arch.d_model(model)
        out[s] = flat[..., start : start + width]
        start += width
    return out


def head_cols(model: nn.Module, c: Component) -> slice | None:
    if c.head is None:
        return None
    hd = arch.head_dim(model)
    return slice(c.head * hd, (c.head + 1) * hd)


def patch_hooks(model: nn.Module, c: Component, source: torch.Tensor, mask: torch.Tensor):
    """Hooks writing ``source`` ([B, T, width of the component]) where ``mask`` [B, T]."""
    if c.head is None:
        return [], [(site_module(model, c.site), edit_output(patch_edit(source, mask)))]
    edit = patch_edit(source, mask, cols=head_cols(model, c))
    return [(arch.get_attn_out_proj(model, c.layer), edit_input(edit))], []
