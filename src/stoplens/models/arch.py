"""The ONLY module that knows where things live inside a Hugging Face decoder-only model.

Everything else asks here for the decoder blocks, the final norm, the unembedding, the input
embedding and the attention / MLP submodules of a block. Families are looked up by
``config.model_type`` in one table; an unknown type falls back to the two common layouts and,
if neither fits, raises :class:`UnsupportedArchitectureError` naming what is missing.

Conventions used across stoplens (residual stream indexing):
    residual[l] for l in 0..L is the input to block l (l < L) and the output of the last block,
    *before* the final norm, for l = L. So residual[0] is the embedding output and residual[L]
    is what the final norm receives. (HF's ``hidden_states[-1]`` is after the final norm for
    Llama/Qwen-style models; stoplens never uses it.)
"""

from __future__ import annotations

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
