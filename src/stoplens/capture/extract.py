"""Batched activation extraction: all requested residual-stream layers in one forward pass,
kept only at the requested positions, accumulated in float32.

Owns: batching (length-sorted, right-padded, explicit position ids; on a CPU sized against
padding, `plan_batches`), the automatic batch-size back-off on out-of-memory, running a shared
prompt prefix once (below), reading residual[l] with hooks (never HF's ``hidden_states[-1]``,
which is after the final norm for Llama/Qwen), stopping the forward pass after the last needed
block (no final norm, no LM head unless asked), and last-position logits via the model's own
final norm and unembedding. Must not: compute statistics or plot.

Residual indexing: see `stoplens.models.arch` (residual[l] = input of block l; residual[L] =
output of the last block, before the final norm).

Shared prefixes. Chat prompts begin with the same template header (on SmolLM2-135M-Instruct
the default system prompt: 20 of a pair prompt's ~47 tokens, in 5 of 6 prompts). Where the
hooks of a pass act alike at every position (none, or an intervention everywhere:
``uniform_hooks``) and nothing is read inside it, a batch runs the prefix its sequences share
once, as a batch of one with the model's key/value cache, and the rest from that cache; the
batches are formed so that the prompts beginning with the common header go together. This
is the same computation as the full pass up to float rounding (tested per family);
``share_prefix=False`` turns it off.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.capture.hooks import (
    Hook,
    PreHook,
    add_hooks,
    bypass_blocks,
    edit_input,
    input_hidden,
    output_hidden,
)
from stoplens.models import arch
from stoplens.progress import bar as progress_bar

HookFactory = Callable[
    [Sequence[int], torch.Tensor],
    tuple[Sequence[tuple[nn.Module, PreHook]], Sequence[tuple[nn.Module, Hook]]],
]
Resume = tuple[int, Callable[[list[int], int], torch.Tensor]]
"""(k, f): start the forward pass at block k; ``f(batch_indices, T)`` returns residual[k] of
those sequences right-padded to length T, [B, T, d]. Blocks before k are not computed."""


SHARED_PREFIX_MIN = 8
"""A batch runs its shared prefix once only where it is at least this many tokens long."""


class _StopForward(Exception):
    """Raised by the last capture hook to skip the rest of the forward pass."""


def model_device(model: nn.Module) -> torch.device:
    """Where input ids must go (`stoplens.models.arch.input_device`; right under device_map
    and offloading too)."""
    return arch.input_device(model)


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ``seqs``: (input_ids [B, T], attention_mask [B, T], position_ids [B, T])."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    pos = torch.arange(T).unsqueeze(0).expand(len(seqs), T).contiguous()
    return ids.to(device), mask.to(device), pos.to(device)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def run_batched(
    fn: Callable[[list[int]], torch.Tensor],
    lengths: Sequence[int],
    batch_size: int = 32,
    desc: str | None = None,
    progress: bool = True,
    groups: Sequence[int] | None = None,
    overhead: float | None = None,
) -> torch.Tensor:
    """Call ``fn(indices)`` on the batches `plan_batches` makes (length-sorted, by ``groups``
    first where given; at most ``batch_size`` items; with ``overhead``, sized against padding)
    and stitch the results (first dimension = items) back into the original order. On
    out-of-memory the batch is halved and retried, and later batches are kept to that size,
    down to 1."""
    queue = plan_batches(lengths, batch_size, groups, overhead)
    results: list[torch.Tensor | None] = [None] * len(lengths)
    cap = max(1, int(batch_size))
    bar = progress_bar(
        total=len(lengths), desc=desc or "forward", enabled=progress and len(lengths) > 0
    )
    try:
        while queue:
            idx = queue.pop(0)
            if len(idx) > cap:
                queue[:0] = [idx[k : k + cap] for k in range(0, len(idx), cap)]
                continue
            try:
                out = fn(idx)
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if not _is_oom(e) or len(idx) == 1:
                    raise
                cap = max(1, len(idx) // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                queue.insert(0, idx)
                continue
            for k, i in enumerate(idx):
                results[i] = out[k]
            bar.update(len(idx))
    finally:
        bar.close()
    if not results:
        raise ValueError("run_batched: no items")
    return torch.stack([r for r in results if r is not None])


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    groups: Sequence[int] | None = None,
    overhead: float | None = None,
) -> list[list[int]]:
    """Batches of item indices, sorted by (group, length), never mixing groups.

    Without ``overhead``: consecutive runs of ``batch_size`` items. With it (the cost of one
    forward pass beyond its tokens, in tokens): the split of the sorted items into batches of
    at most ``batch_size`` that minimises padded tokens + ``overhead`` per batch (exact, by
    dynamic programming). A right-padded batch costs its size x its longest length: 32 chat
    prompts of 24-110 tokens in one batch are 3520 token slots for ~1500 tokens."""
    n = len(lengths)
    key = (lambda i: lengths[i]) if groups is None else (lambda i: (groups[i], lengths[i]))
    order = sorted(range(n), key=key)
    bs = max(1, int(batch_size))
    runs: list[list[int]] = []
    for i in order:  # one run per group
        if runs and (groups is None or groups[runs[-1][-1]] == groups[i]):
            runs[-1].append(i)
        else:
            runs.append([i])
    out: list[list[int]] = []
    for run in runs:
        if overhead is None:
            out += [run[k : k + bs] for k in range(0, len(run), bs)]
            continue
        m = len(run)
        best = [0.0] + [float("inf")] * m  # best[j]: cost of the first j items
        cut = [0] * (m + 1)
        for j in range(1, m + 1):
            longest = lengths[run[j - 1]]
            for i in range(max(0, j - bs), j):
                c = best[i] + (j - i) * longest + overhead
                if c < best[j]:
                    best[j], cut[j] = c, i
        bounds, j = [], m
        while j > 0:
            bounds.append((cut[j], j))
            j = cut[j]
        out += [run[a:b] for a, b in reversed(bounds)]
    return out


def batch_overhead(model: nn.Module) -> float | None:
    """The cost of one forward pass beyond its tokens, in tokens, for `plan_batches`: on a
    CPU about 2e10 FLOPs (measured on SmolLM2-135M-Instruct in bf16 on 2 cores: 1 x 8
    tokens took 60 ms, 32 x 47 tokens 1.03 ms per token, so ~100 tokens), and at least 64
    tokens; None (fixed batches) on an accelerator, where padding to a full batch costs
    little."""
    if arch.input_device(model).type != "cpu":
        return None
    emb = arch.get_embed(model).weight.numel()
    flops = 2.0 * max(1, sum(p.numel() for p in model.parameters()) - emb)
    return max(64.0, 2e10 / flops)


def _gather(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x [B, T, d], pos [B, P] -> [B, P, d] float32 on CPU."""
    b = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    return x[b, pos.to(x.device)].detach().float().cpu()


@dataclass(frozen=True, eq=False)
class _Capture:
    """One `capture_residuals` request: the prompts, where and what to read, and how each
    batch's forward pass runs (interventions, resumed start)."""

    model: nn.Module
    blocks: nn.ModuleList
    device: torch.device
    seqs: Sequence[Sequence[int]]
    positions: Sequence[Sequence[int]]
    layers: list[int]
    pad_id: int
    hook_factory: HookFactory | None
    resume: Resume | None
    cache_key: str | None = None  # the forward's cache kwarg where a shared prefix may run


def _checked_layers(
    L: int,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    layers: Sequence[int] | None,
) -> list[int]:
    """The residual indices to read (default 0..L), after checking them and the positions."""
    layers = list(range(L + 1)) if layers is None else [int(x) for x in layers]
    if not layers or min(layers) < 0 or max(layers) > L:
        raise ValueError(f"layers must be within 0..{L}")
    P = {len(p) for p in positions}
    if len(P) != 1 or len(positions) != len(seqs):
        raise ValueError("positions: one list of equal length per sequence is required")
    for s, ps in zip(seqs, positions, strict=True):
        if max(ps) >= len(s) or min(ps) < 0:
            raise ValueError("a position lies outside its sequence")
    return layers


@torch.no_grad()
def capture_residuals(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    layers: Sequence[int] | None = None,
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    hook_factory: HookFactory | None = None,
    resume: Resume | None = None,
    uniform_hooks: bool = False,
    share_prefix: bool = True,
    progress: bool = True,
    desc: str = "capture",
) -> torch.Tensor:
    """Residual-stream activations at chosen positions.

    Args:
        seqs: n token-id sequences.
        positions: n lists of P positions each (same P for all; indices into each sequence).
        layers: residual indices in 0..L (default all L + 1).
        hook_factory: optional ``f(batch_indices, input_ids) -> (pre_hooks, hooks)`` installed
            for each batch (interventions during capture).
        resume: optional ``(k, f)`` (see `Resume`): the pass starts at block k from stored
            residual[k] (0 < k < L; ``layers`` must all be >= k; the hook factory's hooks must
            not sit on blocks before k, which are bypassed).
        uniform_hooks: the hook factory's hooks act alike at every position (e.g. an
            ablation or an addition everywhere), so a prefix may run on its own.
        share_prefix: run a prefix a batch's sequences share once (module docstring), where
            allowed: no ``resume``, no hooks or uniform ones, a model with a key/value cache.

    Returns:
        float32 tensor [n, len(layers), P, d_model] on CPU.
    """
    L = arch.n_layers(model)
    layer_list = _checked_layers(L, seqs, positions, layers)
    blocks = arch.get_blocks(model)
    device = model_device(model)
    if resume is not None and not (0 < resume[0] < L and min(layer_list) >= resume[0]):
        raise ValueError(f"resume at block {resume[0]}: needs 0 < k < {L} and layers >= k")
    allowed = share_prefix and resume is None and (hook_factory is None or uniform_hooks)
    key = cache_kwarg(model) if allowed else None
    c = _Capture(
        model, blocks, device, seqs, positions, layer_list, pad_id, hook_factory, resume, key
    )
    return run_batched(
        lambda idx: _capture_batch(c, idx),
        [len(s) for s in seqs],
        batch_size,
        desc=desc,
        progress=progress,
        groups=prefix_groups(seqs) if key is not None else None,
        overhead=batch_overhead(model),
    )


def prefix_groups(seqs: Sequence[Sequence[int]]) -> list[int] | None:
    """0 for the sequences that begin with the longest prefix at least half of them share
    (e.g. a chat template's header), 1 for the others; None when that prefix is shorter
    than `SHARED_PREFIX_MIN`. Batching by this group keeps the header's prompts together."""
    n = len(seqs)
    members = list(range(n))
    h = 0
    while True:
        nxt = Counter(seqs[i][h] for i in members if len(seqs[i]) > h + 1)
        if not nxt:
            break
        tok, count = nxt.most_common(1)[0]
        if 2 * count < n:
            break
        members = [i for i in members if len(seqs[i]) > h + 1 and seqs[i][h] == tok]
        h += 1
    if h < SHARED_PREFIX_MIN:
        return None
    groups = [1] * n
    for i in members:
        groups[i] = 0
    return groups


def _takes(model: nn.Module, name: str) -> bool:
    """Whether the model's forward (under peft: its base model's) has a parameter ``name``."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    return name in inspect.signature(inner.forward).parameters


def cache_kwarg(model: nn.Module) -> str | None:
    """The name a model's forward takes its key/value cache by: ``cache`` in transformers
    5.24+, ``past_key_values`` before and in remote code (a peft wrapper: its base model's);
    None if it takes neither."""
    return next((n for n in ("cache", "past_key_values") if _takes(model, n)), None)


def returned_cache(res: Any) -> Any:
    """The key/value cache a forward pass returned (under either name); a model that returns
    none cannot continue from it, which would silently drop the context."""
    for name in ("cache", "past_key_values"):
        past = getattr(res, name, None)
        if past is not None:
            return past
    raise RuntimeError("the model returned no key/value cache (use_cache=True)")


def _reading_hooks(
    c: _Capture, pos: torch.Tensor, store: dict[int, torch.Tensor]
) -> tuple[list[tuple[nn.Module, PreHook]], list[tuple[nn.Module, Hook]]]:
    """Hooks that put residual[l] at ``pos`` ([B, P]) into ``store[l]`` for every requested
    l (block l's input; residual[L] = the last block's output) and stop the pass after the
    last one."""
    blocks, L, last_needed = c.blocks, len(c.blocks), max(c.layers)

    def pre_capture(layer: int) -> PreHook:
        def hook(module, args, kwargs):
            store[layer] = _gather(input_hidden(args, kwargs), pos)
            if layer == last_needed:
                raise _StopForward

        return hook

    def post_capture(module, args, kwargs, output):
        store[L] = _gather(output_hidden(output), pos)
        raise _StopForward

    pre = [(blocks[layer], pre_capture(layer)) for layer in c.layers if layer < L]
    post: list[tuple[nn.Module, Hook]] = [(blocks[L - 1], post_capture)] if L in c.layers else []
    return pre, post


def _resume_hooks(
    c: _Capture, idx: list[int], T: int
) -> tuple[list[tuple[nn.Module, PreHook]], list[nn.Module]]:
    """(the hook that feeds block k the stored residual[k] of the batch, the blocks before k
    to bypass); nothing without ``resume``."""
    if c.resume is None:
        return [], []
    k, source = c.resume
    h = source(idx, T)

    def resumed(x: torch.Tensor, h: torch.Tensor = h) -> torch.Tensor:
        return h.to(device=x.device, dtype=x.dtype)

    return [(c.blocks[k], edit_input(resumed))], list(c.blocks[:k])


def _shared_length(c: _Capture, idx: list[int]) -> int:
    """How many leading tokens the batch ``idx`` runs once (0: none): the prefix its
    sequences share, short of every sequence's last token and of every position read."""
    if c.cache_key is None:
        return 0
    seqs = [c.seqs[i] for i in idx]
    shared = min(len(s) for s in seqs)
    first = seqs[0]
    for s in seqs[1:]:
        shared = next((j for j in range(shared) if s[j] != first[j]), shared)
    first_read = min(min(c.positions[i]) for i in idx)
    n = min(shared, min(len(s) for s in seqs) - 1, first_read)
    return n if n >= SHARED_PREFIX_MIN else 0


def _prefix_cache(c: _Capture, ids: torch.Tensor, pos_ids: torch.Tensor, pre, post) -> Any:
    """The key/value cache of ``ids`` [1, n] under the batch's (uniform) intervention hooks
    (the LM head on the last position only, where the model can)."""
    keep = {"logits_to_keep": 1} if _takes(c.model, "logits_to_keep") else {}
    with add_hooks(pre, post):
        res = c.model(input_ids=ids, position_ids=pos_ids, use_cache=True, **keep)
    return returned_cache(res)


def _capture_batch(c: _Capture, idx: list[int]) -> torch.Tensor:
    """One forward pass over the sequences ``idx``: [B, len(layers), P, d] float32 on CPU."""
    ids, mask, pos_ids = pad_batch([c.seqs[i] for i in idx], c.pad_id, c.device)
    pos = torch.as_tensor([list(c.positions[i]) for i in idx], dtype=torch.long)
    extra_pre, extra_post = c.hook_factory(idx, ids) if c.hook_factory else ((), ())
    n = _shared_length(c, idx)
    kwargs: dict[str, Any] = {"use_cache": False}
    if n:
        cache = _prefix_cache(c, ids[:1, :n], pos_ids[:1, :n], extra_pre, extra_post)
        cache.batch_repeat_interleave(len(idx))
        kwargs = {"use_cache": True, str(c.cache_key): cache}
        ids, pos_ids, pos = ids[:, n:], pos_ids[:, n:], pos - n  # the mask keeps the prefix
    store: dict[int, torch.Tensor] = {}
    pre, post = _reading_hooks(c, pos, store)
    start, skipped = _resume_hooks(c, idx, ids.shape[1])
    # order on one module: the resumed input, then interventions, then capture
    with (
        bypass_blocks(skipped),
        add_hooks([*start, *extra_pre, *pre], [*extra_post, *post]),
        contextlib.suppress(_StopForward),
    ):
        c.model(input_ids=ids, attention_mask=mask, position_ids=pos_ids, **kwargs)
    missing = [layer for layer in c.layers if layer not in store]
    if missing:
        raise RuntimeError(f"capture: layers {missing} were not reached in the forward pass")
    return torch.stack([store[layer] for layer in c.layers], dim=1)


@torch.no_grad()
def residual_sequences(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    pad_id: int = 0,
    batch_size: int = 32,
) -> dict[int, list[torch.Tensor]]:
    """residual[l] at every position of each sequence, for each l in ``layers`` (one pass):
    layer -> n tensors [len_i, d] on CPU in the model's dtype (lossless, so a pass resumed
    from them is the same pass)."""
    T = max(len(s) for s in seqs)
    positions = [list(range(len(s))) + [len(s) - 1] * (T - len(s)) for s in seqs]
    dtype = arch.get_embed(model).weight.dtype
    full = capture_residuals(
        model, seqs, positions, layers, pad_id=pad_id, batch_size=batch_size, progress=False
    )  # [n, len(layers), T, d]
    return {
        int(layer): [full[i, k, : len(s)].to(dtype) for i, s in enumerate(seqs)]
        for k, layer in enumerate(layers)
    }


def resume_from(layer: int, residuals: Sequence[torch.Tensor]) -> Resume:
    """A `Resume` that starts block ``layer`` from ``residuals`` (one [len_i, d] tensor per
    sequence, as `residual_sequences` returns), zero-padded on the right."""

    def source(idx: list[int], T: int) -> torch.Tensor:
        first = residuals[idx[0]]
        out = torch.zeros(len(idx), T, first.shape[-1], dtype=first.dtype)
        for b, i in enumerate(idx):
            out[b, : residuals[i].shape[0]] = residuals[i]
        return out

    return layer, source


@torch.no_grad()
def unembed(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """Logits from residual[L]-space vectors through the model's own final norm and
    unembedding (and logit soft-capping, where the family has it). ``resid``: [..., d] ->
    [..., vocab] float32."""
    return unembed_with_grad(model, resid)


def unembed_with_grad(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """`unembed` that keeps the autograd graph (for gradients with respect to activations,
    e.g. attribution patching); the same computation."""
    norm = arch.get_final_norm(model)
    head = arch.get_unembed(model)
    w: torch.Tensor = head.weight  # its dtype; under offloading it may sit on "meta"
    x = norm(resid.to(device=arch.execution_device(norm), dtype=w.dtype))
    logits = head(x).float()
    cap = arch.logit_softcap(model)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def last_logits(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    *,
    pad_id: int = 0,
    batch_size: int = 32,
    hook_factory: HookFactory | None = None,
    resume: Resume | None = None,
    uniform_hooks: bool = False,
    share_prefix: bool = True,
    progress: bool = True,
    desc: str = "logits",
) -> torch.Tensor:
    """Next-token logits at each sequence's last position, [n, vocab] float32 on CPU; the
    LM head runs on those positions only. ``resume``, ``uniform_hooks``, ``share_prefix``:
    see `capture_residuals`."""
    L = arch.n_layers(model)
    resid = capture_residuals(
        model,
        seqs,
        [[len(s) - 1] for s in seqs],
        [L],
        pad_id=pad_id,
        batch_size=batch_size,
        hook_factory=hook_factory,
        resume=resume,
        uniform_hooks=uniform_hooks,
        share_prefix=share_prefix,
        progress=progress,
        desc=desc,
    )[:, 0, 0]
    out = []
    for chunk in resid.split(256):
        out.append(unembed(model, chunk).cpu())
    return torch.cat(out)


def stop_score(logits: torch.Tensor, eos_id: int) -> torch.Tensor:
    """log p(EOS) - log(1 - p(EOS)) from logits [..., vocab], computed stably:
    logit_eos - logsumexp(other logits)."""
    logits = logits.float()
    others = logits.clone()
    others[..., eos_id] = float("-inf")
    return logits[..., eos_id] - torch.logsumexp(others, dim=-1)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) per row, in nats, float64 [n] on the inputs' device, from logits [n, vocab]
    (P, Q = softmax; computed in float64, clamped at 0 against rounding)."""
    lp = torch.log_softmax(p_logits.double(), dim=-1)
    lq = torch.log_softmax(q_logits.double(), dim=-1)
    return (lp.exp() * (lp - lq)).sum(dim=-1).clamp_min(0.0)
