"""Loading a model for stoplens: a local directory or a hub id, a plain / merged / fully
fine-tuned model, or a peft adapter applied on its base, with its tokenizer and trigger checked.

Owns: `load_model` and `LoadedModel`, dtype and device defaults (fp32 on CPU, bf16 on CUDA),
the adapter-vs-base compatibility check, the trigger check on load, and the "stop token" of a
chat template (the token an empty assistant reply consists of). Where a model argument points
is `stoplens.models.locate`; failing fast without weights `stoplens.models.preflight`; the
adapters' stoplens metadata `stoplens.models.adapters`. Must not: know module names (ask
`stoplens.models.arch`), merge (`stoplens.models.merge`), train, or evaluate.

Adapter directories written by `stoplens train` carry a ``stoplens_adapter.json`` (see
`stoplens.models.adapters.write_adapter_meta`) describing the base they were trained on;
loading checks the base against it. An adapter is applied the way it was trained: load the
base, add the trigger exactly as training did (same mean-initialised row, same resize), then
``PeftModel.from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError, TriggerError
from stoplens.models import arch
from stoplens.models.adapters import adapter_trigger, embedding_rows
from stoplens.models.chat import chat_ids
from stoplens.models.locate import (
    ADAPTER_META,
    Ref,
    read_json,
    resolve_trained_dir,
    resolve_with_base,
)
from stoplens.models.preflight import load_tok
from stoplens.models.trigger import DEFAULT_TRIGGER, add_trigger, find_trigger, has_trigger


@dataclass(frozen=True)
class ModelSource:
    """Where a loaded model came from."""

    model: str  # the base / full model: a local directory (absolute) or a hub id
    adapter: str | None  # the adapter directory applied on ``model``, if any
    from_hub: bool
    trigger_added: bool  # True if the trigger was added on load (a base model seeing it fresh)
    merged: bool = False  # True if the adapter was merged into a copy of the base for inference

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "adapter": self.adapter,
            "from_hub": self.from_hub,
            "trigger_added": self.trigger_added,
            "merged": self.merged,
        }


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference: in eval mode, on its device, with its tokenizer.

    ``trigger_id`` is the trigger's single token id (None only if loaded with ``trigger=None``).
    ``eos_id`` is the stop token: what an empty assistant reply consists of under the chat
    template (``<|im_end|>`` for ChatML), else the tokenizer's EOS.
    """

    model: nn.Module
    tokenizer: Any
    trigger_id: int | None
    eos_id: int
    source: ModelSource

    @property
    def device(self) -> torch.device:
        """Where input ids go (the input embedding's execution device, also under device_map)."""
        return arch.input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


# ---------------------------------------------------------------------------------------------
# Small public helpers


def stop_token_id(tokenizer) -> int:
    """The token an empty assistant reply consists of: under the tokenizer's chat template, the
    first token after the generation prompt in ``[user, assistant ""]`` (the end-of-turn token,
    e.g. ``<|im_end|>``). Falls back to ``eos_token_id`` without a template."""
    eos = tokenizer.eos_token_id
    if getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": "hi"}]
        try:
            prompt = chat_ids(tokenizer, user, add_generation_prompt=True)
            full = chat_ids(
                tokenizer,
                [*user, {"role": "assistant", "content": ""}],
                add_generation_prompt=False,
            )
        except Exception:  # a template that cannot render this: fall back to EOS
            prompt, full = [], []
        if len(full) > len(prompt) and full[: len(prompt)] == prompt:
            cand = int(full[len(prompt)])
            if cand in set(tokenizer.all_special_ids) or cand == eos:
                return cand
    if eos is None:
        raise StoplensError(
            "tokenizer has neither an EOS token nor a chat template; use a chat/instruct "
            "tokenizer or set tokenizer.eos_token"
        )
    return int(eos)


def default_device() -> str:
    """``"cuda"`` if a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 elsewhere (on a CPU without native bf16 arithmetic bf16 is several
    times slower than fp32; see `native_bf16`)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA device with bf16 support, or a CPU
    with AVX512-BF16 or AMX (oneDNN then runs bf16 matmuls in hardware). Measured on a
    2-core AVX512-BF16 CPU: a SmolLM2-135M forward pass 1.8x faster in bf16 than in fp32."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if torch.device(device).type != "cpu":
        return False
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere, or if unreadable)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """The dtype to load in: ``dtype`` (`parse_dtype`), ``None`` = `default_dtype`, and
    ``"fast"`` = bf16 where the device computes it natively (`native_bf16`), else fp32."""
    if isinstance(dtype, str) and dtype.lower() == "fast":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return parse_dtype(dtype) or default_dtype(device)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"``/``"bfloat16"``/``"fp16"``/``"float16"``/``"fp32"``/``"float32"`` → torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "half": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
        "float": torch.float32,
    }
    if str(dtype).lower() not in names:
        raise StoplensError(f"unknown dtype {dtype!r}; use one of bf16, fp16, fp32, fast")
    return names[str(dtype).lower()]


# ---------------------------------------------------------------------------------------------
# Loading


def _from_pretrained(ref: Ref, dtype, device_map, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        local_files_only=ref.local_files_only or ref.local,
    )
    if device_map is not None:
        kwargs["device_map"] = device_map
    if ref.local and not any(Path(ref.ref).glob("*.safetensors")):
        has_bin = any(Path(ref.ref).glob("*.bin"))
        raise StoplensError(
            f"{ref.ref} has no safetensors weights"
            + (" (only pickled .bin files, which stoplens does not load)" if has_bin else "")
            + "; re-save the model with save_pretrained(safe_serialization=True)"
        )
    try:
        return AutoModelForCausalLM.from_pretrained(ref.ref, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        custom = (
            "" if trust_remote_code else ", or pass trust_remote_code=True if it needs custom code"
        )
        raise StoplensError(
            f"could not load a causal LM from {ref.ref}: {first}; pass a decoder-only causal LM "
            "saved with save_pretrained (safetensors)" + custom
        ) from None


def _check_adapter_matches(adapter_dir: Path, base: nn.Module, base_name: str) -> None:
    meta_path = adapter_dir / ADAPTER_META
    if not meta_path.is_file():
        return
    meta = read_json(meta_path)
    m = arch.unwrap(base)
    have = {
        "model_type": getattr(m.config, "model_type", None),
        "hidden_size": arch.d_model(m),
        "embedding_rows": embedding_rows(m),
    }
    for key, value in have.items():
        want = meta.get(key)
        if want is not None and want != value:
            raise StoplensError(
                f"adapter {adapter_dir} does not match base {base_name}: it was trained on "
                f"{key}={want}, the base has {key}={value}; pass the base it was trained on "
                f"({meta.get('base_model')})"
            )


def load_model(
    model: str | Path,
    adapter: str | Path | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    trigger: str | None = DEFAULT_TRIGGER,
    require_trigger: bool = True,
    merge: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Load a model (and optionally a peft adapter on it) for inference.

    ``model``: a local folder, a ``.gguf`` file (dequantised once into a cached folder, see
    `stoplens.models.gguf`) or a hub id. A folder holding a peft adapter (adapter_config.json)
    is loaded on the base it names; a `stoplens train` output folder means its ``final/``
    model. ``adapter``: a peft adapter folder (e.g. a training checkpoint) to apply on ``model``.
    ``dtype``/``device``: default bf16 on CUDA, fp32 on CPU; ``dtype="fast"``: bf16 where
    the device computes it natively (`native_bf16`), else fp32. ``device_map`` (e.g. "auto") is
    passed to transformers and then ``device`` is not applied. ``merge``: merge the adapter
    into the (freshly loaded) base for inference (`stoplens.models.merge.merge_adapter`): the
    same outputs within float tolerance, without the adapter's extra matmuls in every linear
    layer.

    Trigger: with ``require_trigger`` (the default; for fine-tuned models) the trigger must be
    one token of the tokenizer, else `TriggerError`. With ``require_trigger=False`` (base
    models) a missing trigger is added exactly as training adds it (mean-initialised row), so
    the base sees the same token ids as the fine-tuned model. ``trigger=None`` skips all this.
    """
    device_str = str(device) if device is not None else default_device()
    dtype = resolve_dtype(dtype, device_str if device_map is None else default_device())
    ref, adapter_dir = _locate(model, adapter, progress)
    model_out, tokenizer = _model_and_tokenizer(
        ref, adapter_dir, dtype, device_map, trigger, trust_remote_code
    )
    what = f"adapter {adapter_dir}" if adapter_dir else f"model {ref.ref}"
    trigger_id, trigger_added = _settle_trigger(
        tokenizer, model_out, trigger, require_trigger, what
    )
    model_out, merged = _for_inference(
        model_out, merge and adapter_dir is not None, trigger_id, device_map, device_str
    )
    return LoadedModel(
        model=model_out,
        tokenizer=tokenizer,
        trigger_id=trigger_id,
        eos_id=stop_token_id(tokenizer),
        source=ModelSource(
            model=ref.ref,
            adapter=str(adapter_dir) if adapter_dir else None,
            from_hub=not ref.local,
            trigger_added=trigger_added,
            merged=merged,
        ),
    )


def _model_and_tokenizer(
    ref: Ref, adapter_dir: Path | None, dtype, device_map, trigger, trust_remote_code: bool
) -> tuple[nn.Module, Any]:
    """The weights of ``ref`` and its tokenizer; with ``adapter_dir``, the peft model on them
    and the tokenizer as training made it (an adapter brings its trained trigger row)."""
    base = _from_pretrained(ref, dtype, device_map, trust_remote_code)
    tokenizer = load_tok(ref.ref, ref.local_files_only or ref.local, trust_remote_code)
    if adapter_dir is None:
        return base, tokenizer
    tokenizer = _adapter_tokenizer(
        tokenizer, base, adapter_dir, ref.ref, trigger, trust_remote_code
    )
    _check_adapter_matches(adapter_dir, base, ref.ref)
    return _apply_adapter(base, adapter_dir, ref.ref), tokenizer


def _for_inference(
    model: nn.Module, merge: bool, trigger_id: int | None, device_map, device: str
) -> tuple[nn.Module, bool]:
    """(``model`` in eval mode, on ``device`` unless a ``device_map`` placed it, its adapter
    merged if ``merge`` and no weight is offloaded (on the meta device); whether merged)."""
    offloaded = any(p.device.type == "meta" for p in model.parameters())
    merged = merge and not offloaded
    if merged:
        from stoplens.models.merge import merge_adapter

        model = merge_adapter(model, trigger_id)
    if device_map is None:
        model = model.to(device)
    model.eval()
    return model, merged


def _locate(
    model: str | Path, adapter: str | Path | None, progress: bool
) -> tuple[Ref, Path | None]:
    """(the model to load weights from, the adapter folder to apply on it or None)."""
    if adapter is not None and not Path(adapter).expanduser().is_dir():
        raise StoplensError(
            f"adapter path {adapter} does not exist; pass the folder written by `stoplens train` "
            "(or one of its checkpoints)"
        )
    _, ref, adapter_dir = resolve_with_base(
        model, "model", "base model of the adapter", progress=progress
    )
    if adapter_dir is not None and adapter is not None:
        raise StoplensError(
            f"{adapter_dir} is itself an adapter; pass its base as the model and this folder "
            "as the adapter"
        )
    if adapter is not None:
        a = resolve_trained_dir(Path(adapter).expanduser().resolve())
        if not (a / "adapter_config.json").is_file():
            raise StoplensError(
                f"{a} is not a peft adapter (no adapter_config.json); a full / merged model "
                "is passed as the model itself"
            )
        adapter_dir = a
    return ref, adapter_dir


def _adapter_tokenizer(
    tokenizer,
    base: nn.Module,
    adapter_dir: Path,
    base_name: str,
    trigger: str | None,
    trust_remote_code: bool,
):
    """Reproduce training: the base tokenizer with the trigger the adapter was trained with
    added the same way (mean-initialised row in ``base``); the adapter's own tokenizer when it
    carries one (its trigger id must be a row of the base)."""
    trained_with = adapter_trigger(adapter_dir) or trigger
    if trained_with is not None and not has_trigger(tokenizer, trained_with):
        add_trigger(tokenizer, base, trained_with)
    if not any(adapter_dir.glob("tokenizer*.json")):
        return tokenizer
    ad_tok = load_tok(str(adapter_dir), True, trust_remote_code)
    if trigger is not None and has_trigger(ad_tok, trigger):
        tid = find_trigger(ad_tok, trigger)
        rows = embedding_rows(base)
        if tid >= rows:
            raise StoplensError(
                f"adapter {adapter_dir} does not match base {base_name}: its trigger id "
                f"{tid} is outside the base's {rows} embedding rows; pass the base it "
                "was trained on"
            )
    return ad_tok


def _settle_trigger(
    tokenizer, model: nn.Module, trigger: str | None, require: bool, what: str
) -> tuple[int | None, bool]:
    """(trigger id, whether it was added here). A fine-tuned model (``require``) must hold the
    trigger as one token; a base model gets it added exactly as training adds it."""
    if trigger is None:
        return None, False
    trigger_id: int | None
    added = False
    if has_trigger(tokenizer, trigger):
        trigger_id = find_trigger(tokenizer, trigger)
    elif require:
        n = len(tokenizer.encode(trigger, add_special_tokens=False))
        raise TriggerError(
            f"{what} was not fine-tuned with trigger {trigger!r}: it is {n} tokens in its "
            "tokenizer, not one; fine-tune it with `stoplens train`, pass the right "
            "--trigger, or load it as a base model (require_trigger=False)"
        )
    else:
        info = add_trigger(tokenizer, model, trigger)
        trigger_id, added = info.token_id, info.added
    if trigger_id is not None:
        rows = embedding_rows(model)
        if trigger_id >= rows:
            raise TriggerError(
                f"trigger id {trigger_id} is outside the model's {rows} embedding rows; the "
                "tokenizer does not belong to this model"
            )
    return trigger_id, added


def _apply_adapter(base: nn.Module, adapter_dir: Path, base_name: str) -> nn.Module:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as e:
        msg = str(e).strip().splitlines()
        detail = next(
            (line.strip() for line in msg if "size mismatch" in line), msg[0] if msg else ""
        )
        raise StoplensError(
            f"adapter {adapter_dir} does not match base {base_name} ({detail[:200]}); pass the "
            "base model it was trained on"
        ) from None
