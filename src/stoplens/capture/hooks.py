"""Forward hooks on the real Hugging Face modules: installed by one context manager that
always removes them, and small factories that return the hook closures.

Owns: `add_hooks`, `bypass_blocks` (blocks that pass their input through uncomputed),
reading/replacing the hidden-state tensor in a module's inputs/outputs, and the hook factories
for capture, directional and subspace ablation, activation addition and patching (whole
tensors or one head's columns).
Must not: know module names (ask `stoplens.models.arch`), run models, or compute statistics.

All hooks are registered with ``with_kwargs=True``:
    pre-hook:  fn(module, args, kwargs) -> None | (args, kwargs)
    hook:      fn(module, args, kwargs, output) -> None | output
Hidden states have shape [batch, seq, d_model].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from stoplens.models import arch

PreHook = Callable[[nn.Module, tuple, dict], Any]
Hook = Callable[[nn.Module, tuple, dict, Any], Any]


@contextmanager
def add_hooks(
    pre_hooks: Sequence[tuple[nn.Module, PreHook]] = (),
    hooks: Sequence[tuple[nn.Module, Hook]] = (),
) -> Iterator[None]:
    """Install forward pre-hooks and forward hooks; remove every one on exit, even on error."""
    handles = []
    try:
        for module, pre_fn in pre_hooks:
            handles.append(module.register_forward_pre_hook(pre_fn, with_kwargs=True))
        for module, post_fn in hooks:
            handles.append(module.register_forward_hook(post_fn, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def bypass_blocks(blocks: Sequence[nn.Module]) -> Iterator[None]:
    """Inside the context each of ``blocks`` returns its hidden-state input unchanged without
    computing anything (its ``forward`` is swapped for a pass-through and always restored).

    Used to resume a forward pass at block k from stored activations: bypass blocks < k and
    replace block k's input with a pre-hook. Relies on the transformers 5 decoder-block
    contract (a block returns its hidden-state tensor), which the tests check per family.
    Forward hooks registered on a bypassed block still run, on the pass-through values."""

    def passthrough(*args: Any, **kwargs: Any) -> torch.Tensor:
        return input_hidden(args, kwargs)

    saved: list[tuple[nn.Module, Any]] = []
    try:
        for block in blocks:
            saved.append((block, block.__dict__.get("forward")))  # e.g. accelerate's wrapper
            block.forward = passthrough  # type: ignore[method-assign]
        yield
    finally:
        for block, own in saved:
            if own is None:
                del block.forward
            else:
                block.forward = own


# --- reading and replacing the hidden-state tensor ---------------------------------------


def input_hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden-state tensor a module was called with (first positional or `hidden_states`)."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    hs = kwargs.get("hidden_states")
    if not isinstance(hs, torch.Tensor):
        raise RuntimeError("hook: module was called without a hidden_states tensor")
    return hs


def with_input_hidden(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    """(args, kwargs) with the hidden-state input replaced by ``new``."""
    if args and isinstance(args[0], torch.Tensor):
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


def output_hidden(output: Any) -> torch.Tensor:
    """The hidden-state tensor in a module's output (a tensor, or the first element of a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hs = getattr(output, "last_hidden_state", None)
    if isinstance(hs, torch.Tensor):
        return hs
    raise RuntimeError(f"hook: cannot find a hidden-state tensor in output of type {type(output)}")


def with_output_hidden(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    raise RuntimeError(f"hook: cannot replace hidden state in output of type {type(output)}")


# --- generic editing hooks ------------------------------------------------------------------

Edit = Callable[[torch.Tensor], torch.Tensor]


def edit_input(edit: Edit) -> PreHook:
    """Pre-hook that replaces the module's hidden-state input x by ``edit(x)``."""

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return with_input_hidden(args, kwargs, edit(input_hidden(args, kwargs)))

    return hook


def edit_output(edit: Edit) -> Hook:
    """Forward hook that replaces the module's hidden-state output y by ``edit(y)``."""

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return with_output_hidden(output, edit(output_hidden(output)))

    return hook


# --- the science edits ------------------------------------------------------------------------


def ablation_edit(direction: torch.Tensor) -> Edit:
    """x -> x - (x . r_hat) r_hat, at every position. ``direction``: [d_model], any norm."""
    r = direction.detach().float()
    r_hat = r / r.norm().clamp_min(1e-12)

    def edit(x: torch.Tensor) -> torch.Tensor:
        rh = r_hat.to(device=x.device)
        xf = x.float()
        return (xf - (xf @ rh).unsqueeze(-1) * rh).to(x.dtype)

    return edit


def addition_edit(vector: torch.Tensor, positions: torch.Tensor | None = None) -> Edit:
    """x -> x + v at every position (or only at ``positions``: bool mask [batch, seq])."""
    v = vector.detach()

    def edit(x: torch.Tensor) -> torch.Tensor:
        vv = v.to(device=x.device, dtype=x.dtype)
        if positions is None:
            return x + vv
        mask = positions.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
        return x + mask * vv

    return edit


def patch_edit(source: torch.Tensor, mask: torch.Tensor, cols: slice | None = None) -> Edit:
    """x -> where(mask, source, x). ``source``: [batch, seq, d] (or [batch, seq, width of
    ``cols``]); ``mask``: bool [batch, seq]. With ``cols`` only that slice of the last axis is
    replaced (e.g. one head's columns of the attention output projection's input)."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.device).unsqueeze(-1)
        src = source.to(device=x.device, dtype=x.dtype)
        if cols is None:
            return torch.where(m, src, x)
        out = x.clone()
        out[..., cols] = torch.where(m, src, x[..., cols])
        return out

    return edit


def subspace_ablation_edit(basis: torch.Tensor) -> Edit:
    """x -> x - Q Qᵀ x at every position: the span of the rows of ``basis`` ([k, d_model],
    any k >= 1, orthonormalised here) is projected out. k = 1 is `ablation_edit`."""
    b = basis.detach().double().reshape(-1, basis.shape[-1])
    q, _ = torch.linalg.qr(b.t())  # [d, k], orthonormal columns spanning the rows of basis
    q = q.float()

    def edit(x: torch.Tensor) -> torch.Tensor:
        qq = q.to(device=x.device)
        xf = x.float()
        return (xf - (xf @ qq) @ qq.t()).to(x.dtype)

    return edit


def directional_ablation_hooks(
    model: nn.Module, direction: torch.Tensor
) -> tuple[list[tuple[nn.Module, PreHook]], list[tuple[nn.Module, Hook]]]:
    """Hooks that project ``direction`` out of every block input, attention output and MLP
    output, at all positions (Arditi et al.'s directional ablation). Use with `add_hooks`.

    The attention and MLP outputs edited are the terms added to the residual stream
    (`stoplens.models.arch.get_attn_out` / `get_mlp_out`): in post-norm families (Gemma 2/3,
    OLMo 2) the outputs of the norms after attention and MLP, whose weights would otherwise
    put the direction back. So the residual stream carries no component along ``direction``
    at any block input, nor at the last block's output."""
    return everywhere_hooks(model, ablation_edit(direction))


def subspace_ablation_hooks(
    model: nn.Module, basis: torch.Tensor
) -> tuple[list[tuple[nn.Module, PreHook]], list[tuple[nn.Module, Hook]]]:
    """Directional ablation of a k-dimensional subspace (rows of ``basis`` [k, d_model]) at
    the same sites as `directional_ablation_hooks`."""
    return everywhere_hooks(model, subspace_ablation_edit(basis))


def everywhere_hooks(
    model: nn.Module, edit: Edit
) -> tuple[list[tuple[nn.Module, PreHook]], list[tuple[nn.Module, Hook]]]:
    """Hooks applying ``edit`` to every block input and to every term added to the residual
    stream (attention and MLP outputs, after the post-norm where the family has one)."""
    pre = [(block, edit_input(edit)) for block in arch.get_blocks(model)]
    post: list[tuple[nn.Module, Hook]] = []
    for layer in range(arch.n_layers(model)):
        post.append((arch.get_attn_out(model, layer), edit_output(edit)))
        post.append((arch.get_mlp_out(model, layer), edit_output(edit)))
    return pre, post


def residual_edit_hooks(
    model: nn.Module, layer: int, edit: Edit
) -> tuple[list[tuple[nn.Module, PreHook]], list[tuple[nn.Module, Hook]]]:
    """Hooks that apply ``edit`` to residual[layer] (see `stoplens.models.arch` for indexing):
    the input of block ``layer`` for layer < L, the output of the last block for layer == L."""
    L = arch.n_layers(model)
    if not 0 <= layer <= L:
        raise ValueError(f"layer {layer} out of range 0..{L}")
    if layer < L:
        return [(arch.get_blocks(model)[layer], edit_input(edit))], []
    return [], [(arch.get_blocks(model)[L - 1], edit_output(edit))]
