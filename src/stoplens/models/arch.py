"""The ONLY module that knows where things live inside a Hugging Face decoder-only model.

Everything else asks here for the decoder blocks, the final norm, the unembedding, the input
embedding and the attention / MLP submodules of a block, and (for the component analyses)
the attention and MLP output projections, the number of heads and the head width, a weight in
[out, in] form whatever its storage, and eager attention on demand. Families are looked up by
``config.model_type`` in one table; an unknown type falls back to the two common layouts and,
if neither fits, raises :class:`UnsupportedArchitectureError` naming what is missing.

Conventions used across stoplens (residual stream indexing):
    residual[l] for l in 0..L is the input to block l (l < L) and the output of the last block,
    *before* the final norm, for l = L. So residual[0] is the embedding output and residual[L]
    is what the final norm receives. (HF's ``hidden_states[-1]`` is after the final norm for
    Llama/Qwen-style models; stoplens never uses it.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchSpec:
    """Attribute paths (dotted, from the *CausalLM* module) of one architecture family.

    ``attn_out`` / ``mlp_out``: the block attribute whose output is added to the residual
    stream for attention / MLP (None: ``attn`` / ``mlp`` themselves). They differ in
    post-norm families (Gemma 2/3, OLMo 2/3, EXAONE 4), whose blocks compute
    ``x + post_attention_layernorm(attn(...))`` and ``x + post_feedforward_layernorm(mlp(...))``:
    an edit of the attention output there is undone by the norm that follows it."""

    blocks: str
    final_norm: str
    attn: str  # attribute of a block
    mlp: str  # attribute of a block
    parallel_residual: bool = False  # attention and MLP read the same block input (NeoX, Phi-1/2)
    attn_out: str | None = None  # attribute of a block; None: attn
    mlp_out: str | None = None  # attribute of a block; None: mlp


_LLAMA_LIKE = ArchSpec(blocks="model.layers", final_norm="model.norm", attn="self_attn", mlp="mlp")
_POST_NORM = ArchSpec(
    blocks="model.layers",
    final_norm="model.norm",
    attn="self_attn",
    mlp="mlp",
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
)

ARCH_TABLE: dict[str, ArchSpec] = {
    **{
        t: _LLAMA_LIKE
        for t in (
            "qwen2",
            "qwen3",
            "qwen2_moe",
            "qwen3_moe",
            "llama",
            "mistral",
            "mixtral",
            "gemma",
            "phi3",
            "olmo",
            "granite",
            "smollm3",
        )
    },
    **{t: _POST_NORM for t in ("gemma2", "gemma3_text", "olmo2", "olmo3", "exaone4")},
    "phi": ArchSpec(
        blocks="model.layers",
        final_norm="model.final_layernorm",
        attn="self_attn",
        mlp="mlp",
        parallel_residual=True,
    ),
    "gpt2": ArchSpec(blocks="transformer.h", final_norm="transformer.ln_f", attn="attn", mlp="mlp"),
    "gpt_neox": ArchSpec(
        blocks="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        attn="attention",
        mlp="mlp",
        parallel_residual=True,
    ),
}

_FALLBACKS = (
    _LLAMA_LIKE,
    _POST_NORM,
    ArchSpec(blocks="transformer.h", final_norm="transformer.ln_f", attn="attn", mlp="mlp"),
)


def unwrap(model: nn.Module) -> Any:
    """The underlying transformers CausalLM of a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _get_path(root: nn.Module, path: str) -> nn.Module | None:
    obj: object = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.Module) else None


def _fits(model: nn.Module, spec: ArchSpec) -> bool:
    blocks = _get_path(model, spec.blocks)
    if not (isinstance(blocks, nn.ModuleList) and len(blocks) > 0):
        return False
    block = blocks[0]
    parts = (spec.attn, spec.mlp, spec.attn_out or spec.attn, spec.mlp_out or spec.mlp)
    if _get_path(model, spec.final_norm) is None or any(_get_path(block, p) is None for p in parts):
        return False
    # A block with a norm after its MLP (post-norm) adds that norm's output to the residual;
    # a spec that would edit the MLP output itself does not fit it.
    return spec.mlp_out is not None or _get_path(block, _POST_NORM.mlp_out or "") is None


def arch_spec(model: nn.Module) -> ArchSpec:
    """The :class:`ArchSpec` of ``model`` (peft wrappers are unwrapped)."""
    m = unwrap(model)
    model_type = getattr(getattr(m, "config", None), "model_type", None)
    spec = ARCH_TABLE.get(model_type) if model_type else None
    if spec is not None and _fits(m, spec):
        return spec
    for cand in _FALLBACKS:
        if _fits(m, cand):
            return cand
    tried = ", ".join(sorted({s.blocks for s in (*_FALLBACKS, *ARCH_TABLE.values())}))
    raise UnsupportedArchitectureError(
        f"unsupported architecture {type(m).__name__} (model_type={model_type!r}): no decoder "
        f"blocks, final norm, attention and MLP found at the known paths ({tried}); add an entry "
        "to stoplens.models.arch.ARCH_TABLE"
    )


def get_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, in order. Length = number of layers L."""
    blocks = _get_path(unwrap(model), arch_spec(model).blocks)
    assert isinstance(blocks, nn.ModuleList)
    return blocks


def get_final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the last block's output before the unembedding."""
    norm = _get_path(unwrap(model), arch_spec(model).final_norm)
    assert norm is not None
    return norm


def get_attn(model: nn.Module, layer: int) -> nn.Module:
    """The attention submodule of block ``layer``."""
    mod = _get_path(get_blocks(model)[layer], arch_spec(model).attn)
    assert mod is not None
    return mod


def get_mlp(model: nn.Module, layer: int) -> nn.Module:
    """The MLP submodule of block ``layer``."""
    mod = _get_path(get_blocks(model)[layer], arch_spec(model).mlp)
    assert mod is not None
    return mod


def get_attn_out(model: nn.Module, layer: int) -> nn.Module:
    """The module of block ``layer`` whose output is the attention term added to the residual
    stream: the attention itself, or the norm after it in post-norm families (see `ArchSpec`)."""
    spec = arch_spec(model)
    mod = _get_path(get_blocks(model)[layer], spec.attn_out or spec.attn)
    assert mod is not None
    return mod


def get_mlp_out(model: nn.Module, layer: int) -> nn.Module:
    """The module of block ``layer`` whose output is the MLP term added to the residual stream:
    the MLP itself, or the norm after it in post-norm families (see `ArchSpec`)."""
    spec = arch_spec(model)
    mod = _get_path(get_blocks(model)[layer], spec.mlp_out or spec.mlp)
    assert mod is not None
    return mod


def get_unembed(model: nn.Module) -> Any:
    """The unembedding (LM head); ``weight`` has shape [vocab, d_model]."""
    head = unwrap(model).get_output_embeddings()
    if head is None:
        raise UnsupportedArchitectureError(
            f"{type(unwrap(model)).__name__} has no output embeddings; stoplens needs a CausalLM head"
        )
    return head


def get_embed(model: nn.Module) -> Any:
    """The input token embedding; ``weight`` has shape [vocab_rows, d_model]."""
    return unwrap(model).get_input_embeddings()


def execution_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes. Under accelerate (``device_map``, CPU/disk offload) its hook's
    execution device: the weights may then sit on "meta" or on the CPU while the module runs
    elsewhere. Otherwise the device of its first parameter."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
    p = next(module.parameters(), None)
    if p is None or p.device.type == "meta":
        raise UnsupportedArchitectureError(
            f"cannot tell where {type(module).__name__} runs: its weights are on "
            f"{'meta' if p is not None else 'no device'} and it has no accelerate hook; load the "
            "model with device_map or move it to a device"
        )
    return p.device


def input_device(model: nn.Module) -> torch.device:
    """Where input ids must go: the execution device of the input embedding."""
    return execution_device(get_embed(model))


def n_layers(model: nn.Module) -> int:
    """Number of decoder blocks L (residual stream has L + 1 entries)."""
    return len(get_blocks(model))


def d_model(model: nn.Module) -> int:
    """Width of the residual stream."""
    return int(get_embed(model).weight.shape[1])


def logit_softcap(model: nn.Module) -> float | None:
    """Final logit soft-capping constant (Gemma 2/3), or None."""
    cap = getattr(unwrap(model).config, "final_logit_softcapping", None)
    return float(cap) if cap else None


# --- per-head and weight-space access (components analysis) --------------------------------
# Kept apart from the ArchSpec table on purpose: the output projections are found by name
# inside the attention / MLP submodule the table already locates, so a new family needs no
# new field here unless it names them differently.

ATTN_OUT_NAMES = ("o_proj", "c_proj", "dense", "out_proj")
"""Names of the attention output projection (input = concatenated heads) by family:
Llama/Qwen/Mistral/Gemma ``o_proj``, GPT-2 ``c_proj``, GPT-NeoX/Phi ``dense``."""
MLP_OUT_NAMES = ("down_proj", "c_proj", "fc2", "dense_4h_to_h")
"""Names of the MLP's output projection (writes to the residual stream) by family."""


def _named_child(parent: nn.Module, names: Sequence[str], what: str) -> nn.Module:
    for name in names:
        mod = getattr(parent, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise UnsupportedArchitectureError(
        f"{type(parent).__name__} has no {what} named any of {', '.join(names)}; add its name to "
        f"stoplens.models.arch.{'ATTN' if 'attention' in what else 'MLP'}_OUT_NAMES"
    )


def get_attn_out_proj(model: nn.Module, layer: int) -> nn.Module:
    """The attention output projection of block ``layer``: its input is the concatenation of
    the per-head outputs, [..., n_heads * head_dim] (so a pre-hook on it sees every head
    separately, also under grouped-query attention); its output is added to the residual
    stream (after a post-norm in families that have one)."""
    return _named_child(get_attn(model, layer), ATTN_OUT_NAMES, "attention output projection")


def get_mlp_out_proj(model: nn.Module, layer: int) -> nn.Module:
    """The MLP's output projection of block ``layer`` (down_proj / c_proj / fc2 / ...)."""
    return _named_child(get_mlp(model, layer), MLP_OUT_NAMES, "MLP output projection")


def n_heads(model: nn.Module) -> int:
    """Number of attention (query) heads per block."""
    cfg = unwrap(model).config
    for key in ("num_attention_heads", "n_head", "num_heads"):
        val = getattr(cfg, key, None)
        if isinstance(val, int) and val > 0:
            return val
    raise UnsupportedArchitectureError(
        f"{type(unwrap(model)).__name__}: the config names no number of attention heads "
        "(num_attention_heads / n_head); stoplens cannot split the attention output per head"
    )


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The weight of a linear map as [out_features, in_features], whatever its storage:
    ``nn.Linear``, GPT-2's ``Conv1D`` (stored [in, out]) or a peft LoRA wrapper (its base
    layer's weight, without the adapter)."""
    base = getattr(module, "base_layer", module)
    w = getattr(base, "weight", None)
    if not isinstance(w, torch.Tensor):
        raise UnsupportedArchitectureError(f"{type(base).__name__} has no weight tensor")
    return w.t() if type(base).__name__ == "Conv1D" else w


def head_dim(model: nn.Module) -> int:
    """Width of one head's slice of the attention output projection's input."""
    width = int(linear_weight(get_attn_out_proj(model, 0)).shape[1])
    h = n_heads(model)
    if width % h:
        raise UnsupportedArchitectureError(
            f"attention output projection input width {width} is not a multiple of {h} heads"
        )
    return width // h


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Inside the context the model computes attention eagerly, so attention modules return
    their weights [batch, n_heads, T, T] as the second element of their output; the previous
    implementation (e.g. sdpa) is always restored."""
    m = unwrap(model)
    old = getattr(m.config, "_attn_implementation", None)
    if old == "eager" or not hasattr(m, "set_attn_implementation"):
        yield
        return
    m.set_attn_implementation("eager")
    try:
        yield
    finally:
        m.set_attn_implementation(old)
