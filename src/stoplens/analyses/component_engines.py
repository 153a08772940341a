"""The engines of component patching: exact (one batched patched pass per component and
position group, resumed at the component's block) and first order (attribution patching: one
source forward and one target forward + backward per batch, for every component at once).
The science on top (normalisation, nulls, ranking) is `stoplens.analyses.components`.

Owns: `patch_components` and `attribution_patching`. Must not: normalise, rank, plot or
write files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from stoplens.capture.extract import (
    last_logits,
    model_device,
    pad_batch,
    residual_sequences,
    resume_from,
    run_batched,
    stop_score,
    unembed_with_grad,
)
from stoplens.capture.hooks import add_hooks
from stoplens.capture.sites import (
    Component,
    Site,
    StopForward,
    capture_sites,
    head_cols,
    patch_hooks,
    read_site_hooks,
    stop_after,
)
from stoplens.models import arch
from stoplens.progress import bar


def _slots(groups: Mapping[str, Sequence[Sequence[int]]], items: Sequence[int]):
    """Per item, every position some group needs (padded to equal count by repetition) and
    the slot of each position."""
    need = [sorted({p for g in groups.values() for p in g[i]}) for i in items]
    width = max(1, max(len(x) for x in need))
    slots = [x + [x[-1] if x else 0] * (width - len(x)) for x in need]
    return slots, [{p: j for j, p in enumerate(x)} for x in need]


@torch.no_grad()
def patch_components(
    model: nn.Module,
    source_seqs: Sequence[Sequence[int]],
    target_seqs: Sequence[Sequence[int]],
    components: Sequence[Component],
    groups: Mapping[str, Sequence[Sequence[int]]],
    *,
    eos_id: int,
    pad_id: int = 0,
    batch_size: int = 32,
    chunk_size: int = 64,
    desc: str = "components: exact patching",
    progress: bool = True,
) -> torch.Tensor:
    """Exact patching: stop score at the last position of each target run with one
    component's activation at ``groups[g][i]`` replaced by the source run's.

    Each cell resumes at the component's block from the stored target residual stream (the
    blocks before it are unchanged by the patch), as `patch_residual_stream` does.

    Returns:
        float32 [n, n_components, n_groups] patched stop scores (NaN where a group is empty).
    """
    n = _check_pairs(source_seqs, target_seqs, groups, "patching")
    if any(len(s) != len(t) for s, t in zip(source_seqs, target_seqs, strict=True)):
        raise ValueError("patching: a source and its target differ in length")
    L = arch.n_layers(model)
    names = list(groups)
    out = torch.full((n, len(components), len(names)), float("nan"))
    device = model_device(model)
    sites = sorted({c.site for c in components})
    mid = sorted({c.layer for c in components if 0 < c.layer < L})
    n_chunks = -(-n // chunk_size)
    with bar(len(components) * len(names) * n_chunks, desc, enabled=progress, unit="cell") as b:
        for c0 in range(0, n, chunk_size):
            chunk = list(range(c0, min(n, c0 + chunk_size)))
            slots, slot_of = _slots(groups, chunk)
            src = capture_sites(
                model, [source_seqs[i] for i in chunk], slots, sites, pad_id=pad_id,
                batch_size=batch_size,
            )  # fmt: skip
            tgt = [target_seqs[i] for i in chunk]
            resid = residual_sequences(model, tgt, mid, pad_id=pad_id, batch_size=batch_size)
            for ci, c in enumerate(components):
                sl = head_cols(model, c)
                site_src = src[c.site] if sl is None else src[c.site][..., sl]
                for gi, g in enumerate(names):
                    pos_g = [list(groups[g][i]) for i in chunk]
                    b.update(1)
                    if not any(pos_g):
                        continue
                    factory = _component_factory(model, c, pos_g, site_src, slot_of, device)
                    resume = resume_from(c.layer, resid[c.layer]) if c.layer in resid else None
                    scores = _stop_scores(model, tgt, factory, resume, eos_id, pad_id, batch_size)
                    for j, i in enumerate(chunk):
                        if groups[g][i]:
                            out[i, ci, gi] = scores[j]
    return out


def _stop_scores(model, tgt, factory, resume, eos_id: int, pad_id: int, batch_size: int):
    """Stop scores [n] at the last position of the targets ``tgt`` run with the patch of
    ``factory``, from block k's stored input when ``resume`` is given."""
    logits = last_logits(
        model, tgt, pad_id=pad_id, batch_size=batch_size, hook_factory=factory, resume=resume,
        progress=False,
    )  # fmt: skip
    return stop_score(logits, eos_id)


def _check_pairs(
    source_seqs: Sequence[Sequence[int]],
    target_seqs: Sequence[Sequence[int]],
    groups: Mapping[str, Sequence[Sequence[int]]],
    what: str,
) -> int:
    """The number of pairs n, after checking that sources, targets and every group have n
    entries."""
    n = len(source_seqs)
    if len(target_seqs) != n or any(len(g) != n for g in groups.values()):
        raise ValueError(f"{what}: sources, targets and groups must have one entry per pair")
    return n


def _component_factory(model, c: Component, pos_g, site_src, slot_of, device):
    """hook_factory writing the source run's ``site_src[j, slots]`` ([c, width, w]) into
    component ``c`` at ``pos_g[j]`` for the chunk-local items j of each batch."""

    def factory(idx, ids):
        B, T = ids.shape
        source = torch.zeros(B, T, site_src.shape[-1])
        mask = torch.zeros(B, T, dtype=torch.bool)
        for bi, j in enumerate(idx):
            if pos_g[j]:
                cols = [slot_of[j][p] for p in pos_g[j]]
                source[bi, pos_g[j]] = site_src[j, cols]
                mask[bi, pos_g[j]] = True
        return patch_hooks(model, c, source.to(device), mask.to(device))

    return factory


def _group_masks(groups, names, idx, T: int) -> torch.Tensor:
    """[groups, B, T]: 1 at each group's positions of each pair of the batch."""
    masks = torch.zeros(len(names), len(idx), T)
    for gi, gname in enumerate(names):
        for bi, i in enumerate(idx):
            masks[gi, bi, list(groups[gname][i])] = 1.0
    return masks


def _by_component(model, components, sites, src, tgt, grads, masks) -> torch.Tensor:
    """Σ_{p in group} (a_src - a_tgt)_p · ∂s/∂a_tgt,p per pair, component and group
    [B, n_components, n_groups] (NaN where a group is empty)."""
    B, T = masks.shape[1:]
    empty = masks.sum(-1) == 0  # [groups, B]
    H, hd = arch.n_heads(model), arch.head_dim(model)
    res = torch.full((B, len(components), masks.shape[0]), float("nan"))
    for s, g in zip(sites, grads, strict=True):
        if g is None:
            g = torch.zeros_like(tgt[s])
        contrib = ((src[s].float() - tgt[s].detach().float()) * g.float()).cpu()  # [B, T, w]
        per_pos = (  # [B, T, H] per head, [B, T, 1] for an MLP
            contrib.view(B, T, H, hd).sum(-1) if s[0] == "attn" else contrib.sum(-1, True)
        )
        by_group = torch.einsum("gbt,btk->bkg", masks, per_pos)  # [B, H or 1, groups]
        by_group[empty.t().unsqueeze(1).expand_as(by_group)] = float("nan")
        for ci, c in enumerate(components):
            if c.site == s:
                res[:, ci] = by_group[:, c.head or 0]
    return res


def _require_grad_hook(module, args, kwargs, output):
    """Make the input embedding a leaf that requires grad (the model's weights may not), so
    the whole forward graph is built and every activation downstream has a gradient."""
    if isinstance(output, torch.Tensor) and not output.requires_grad:
        return output.detach().requires_grad_(True)
    return None


def attribution_patching(
    model: nn.Module,
    source_seqs: Sequence[Sequence[int]],
    target_seqs: Sequence[Sequence[int]],
    components: Sequence[Component],
    groups: Mapping[str, Sequence[Sequence[int]]],
    *,
    eos_id: int,
    pad_id: int = 0,
    batch_size: int = 8,
    desc: str = "components: attribution",
    progress: bool = True,
) -> torch.Tensor:
    """First-order estimate of ``s_patched - s_target`` for every component and group:
    Σ_{p in group} (a_src - a_tgt)_p · ∂s/∂a_tgt,p, with s the target's stop score at its last
    position. One source forward and one target forward + backward per batch.

    Returns:
        float32 [n, n_components, n_groups] (NaN where a group is empty).
    """
    _check_pairs(source_seqs, target_seqs, groups, "attribution")
    L = arch.n_layers(model)
    names = list(groups)
    sites = sorted({c.site for c in components})
    device = model_device(model)
    embed = arch.get_embed(model)

    def one_batch(idx: list[int]) -> torch.Tensor:
        src_ids, mask, pos_ids = pad_batch([source_seqs[i] for i in idx], pad_id, device)
        tgt_ids, _, _ = pad_batch([target_seqs[i] for i in idx], pad_id, device)
        src: dict[Site, torch.Tensor] = {}
        pre, post = read_site_hooks(model, sites, src)
        stop = stop_after(model, max(layer for _, layer in sites))
        with torch.no_grad(), add_hooks(pre, [*post, stop]), contextlib.suppress(StopForward):
            model(input_ids=src_ids, attention_mask=mask, position_ids=pos_ids, use_cache=False)
        tgt: dict[Site, torch.Tensor] = {}
        keep: dict[str, torch.Tensor] = {}
        pre, post = read_site_hooks(model, sites, tgt)
        hooks = [(embed, _require_grad_hook), *post, stop_after(model, L - 1, keep)]
        with torch.enable_grad():
            with add_hooks(pre, hooks), contextlib.suppress(StopForward):
                model(input_ids=tgt_ids, attention_mask=mask, position_ids=pos_ids, use_cache=False)
            last = torch.as_tensor(
                [len(target_seqs[i]) - 1 for i in idx], device=keep["out"].device
            )
            h_last = keep["out"][torch.arange(len(idx), device=last.device), last]
            score = stop_score(unembed_with_grad(model, h_last), eos_id).sum()
            grads = torch.autograd.grad(score, [tgt[s] for s in sites], allow_unused=True)
        masks = _group_masks(groups, names, idx, tgt_ids.shape[1])
        return _by_component(model, components, sites, src, tgt, grads, masks)

    return run_batched(
        one_batch, [len(s) for s in target_seqs], batch_size, desc=desc, progress=progress
    )
