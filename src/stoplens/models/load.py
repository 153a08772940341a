"""Loading a model for stoplens: a local directory or a hub id, a plain / merged / fully
fine-tuned model, or a peft adapter applied on its base, with its tokenizer and trigger checked.

Owns: resolving what ``model`` / ``adapter`` point at (a ``.gguf`` file becomes its cached
folder, see `stoplens.models.gguf`), `preflight` (resolve and load config + tokenizer without
weights, to fail fast), dtype and device defaults (fp32 on CPU, bf16 on CUDA), offline
behaviour (never hang on an unreachable hub), the adapter-vs-base compatibility check, the
trigger check on load, the stoplens metadata of adapters (the trigger they were trained with,
the base path, `rebase_adapters` for trees built under a temporary name), and the "stop token"
of a chat template (the token an empty assistant reply consists of). Must not: know module
names (ask `stoplens.models.arch`), merge (`stoplens.models.merge`), train, or evaluate.

Adapter directories written by `stoplens train` carry a ``stoplens_adapter.json`` (see
:func:`write_adapter_meta`) describing the base they were trained on; loading checks the base
against it. An adapter is applied the way it was trained: load the base, add the trigger
exactly as training did (same mean-initialised row, same resize), then
``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError, TriggerError
from stoplens.models import arch
from stoplens.models.chat import chat_ids
from stoplens.models.tokenizer import load_tokenizer
from stoplens.models.trigger import DEFAULT_TRIGGER, add_trigger, find_trigger, has_trigger

ADAPTER_META = "stoplens_adapter.json"
TRAIN_JSON = "train.json"
FINAL_DIR = "final"
CHECKPOINTS_DIR = "checkpoints"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")
_TRUE = {"1", "on", "yes", "true"}


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
    """bf16 on CUDA, fp32 elsewhere (bf16 is ~6x slower than fp32 on CPU)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


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
        raise StoplensError(f"unknown dtype {dtype!r}; use one of bf16, fp16, fp32")
    return names[str(dtype).lower()]


def hub_offline() -> bool:
    """Whether the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(k, "0").strip().lower() in _TRUE
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, bounded in time (DNS included)."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _cached_on_hub(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return False
    return isinstance(hit, str)


# ---------------------------------------------------------------------------------------------
# Resolving what the user passed


@dataclass(frozen=True)
class _Ref:
    ref: str  # absolute directory or hub id
    local: bool
    local_files_only: bool = False


def _resolve(model: str | Path, what: str = "model", *, progress: bool = True) -> _Ref:
    """A local directory, a GGUF file (dequantised once into a cached folder, which is what
    is returned) or a hub id; errors name the fix and never wait on the network long."""
    p = Path(model).expanduser()
    if p.exists():
        if p.is_file() and p.suffix.lower() == ".gguf":
            from stoplens.models.gguf import dequantize_gguf

            return _Ref(str(dequantize_gguf(p, progress=progress)), local=True)
        if not p.is_dir():
            raise StoplensError(
                f"{what} path {p} is a file; pass the directory it is in (or a .gguf file)"
            )
        return _Ref(str(p.resolve()), local=True)
    s = str(model)
    if not _HUB_ID.fullmatch(s) or s.startswith((".", "~")):
        raise StoplensError(
            f"{what} path {s} does not exist; pass an existing directory (saved with "
            "save_pretrained / `stoplens train`) or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    cached = _cached_on_hub(s)
    if hub_offline():
        if cached:
            return _Ref(s, local=False, local_files_only=True)
        raise StoplensError(
            f"{what} {s!r} is not a local directory and the hub is offline (HF_HUB_OFFLINE=1) "
            "with no cached copy; pass a local directory, or download it once while online "
            f"(`hf download {s}`)"
        )
    if not _hub_reachable():
        if cached:  # no network: use the cached copy instead of waiting on retries
            return _Ref(s, local=False, local_files_only=True)
        raise StoplensError(
            f"{what} {s!r} is not a local directory and the Hugging Face hub cannot be reached; "
            f"check the path, or download it while online (`hf download {s}`) and pass the folder"
        )
    return _Ref(s, local=False)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise StoplensError(
            f"{path}: unreadable ({e}); re-create it or pass another model"
        ) from None


def resolve_trained_dir(path: Path) -> Path:
    """A `stoplens train` output folder → its ``final/`` model; other folders unchanged.

    An unfinished run (checkpoints but no ``final/``) is an error that names ``--resume``.
    """
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    if (path / FINAL_DIR).is_dir() and (path / TRAIN_JSON).is_file():
        return path / FINAL_DIR
    if (path / CHECKPOINTS_DIR).is_dir():
        raise StoplensError(
            f"{path} holds an unfinished training run (checkpoints, no final model); finish it "
            f"with `stoplens train --resume --out {path}` or load a checkpoint as the adapter"
        )
    raise StoplensError(
        f"{path} holds no model (no config.json or adapter_config.json); pass a model folder "
        "saved with save_pretrained or the output folder of `stoplens train`"
    )


# ---------------------------------------------------------------------------------------------
# Adapter metadata


def embedding_rows(model: nn.Module) -> int:
    """Height of the input embedding matrix (may exceed the tokenizer's length)."""
    return int(next(arch.get_embed(model).parameters()).shape[0])


def adapter_meta(model: nn.Module, trigger: str | None, trigger_id: int | None, base: str) -> dict:
    """What `stoplens train` records about the base an adapter (or full model) was trained on."""
    m = arch.unwrap(model)
    return {
        "base_model": base,
        "model_type": getattr(m.config, "model_type", None),
        "hidden_size": arch.d_model(m),
        "embedding_rows": embedding_rows(m),
        "trigger": trigger,
        "trigger_id": trigger_id,
    }


def write_adapter_meta(out_dir: Path, meta: dict, *, final_dir: Path | None = None) -> None:
    """Write ``stoplens_adapter.json`` into ``out_dir``; ``base_relpath`` is added when the base
    is a local folder so that moving a whole tree (as the tiny-pair cache does) keeps it valid.
    ``final_dir``: where ``out_dir`` will be renamed to (the relative path is taken from
    there)."""
    from stoplens.io import atomic_write_json

    meta = dict(meta)
    base = Path(meta["base_model"])
    if base.is_dir():
        where = Path(final_dir if final_dir is not None else out_dir).resolve()
        meta["base_relpath"] = os.path.relpath(base.resolve(), where)
    atomic_write_json(Path(out_dir) / ADAPTER_META, meta)


def _adapter_trigger(adapter_dir: Path) -> str | None:
    meta_path = adapter_dir / ADAPTER_META
    return _read_json(meta_path).get("trigger") if meta_path.is_file() else None


def stored_trigger(model: str | Path | None) -> str | None:
    """The trigger a model or adapter written by stoplens was trained with (read from its
    ``stoplens_adapter.json``; a `stoplens train` output folder means its ``final/``), or
    None for anything else (a hub id, a GGUF file, a model stoplens did not train)."""
    if model is None:
        return None
    p = Path(model).expanduser()
    if not p.is_dir():
        return None
    try:
        return _adapter_trigger(resolve_trained_dir(p))
    except StoplensError:
        return None


def resolve_trigger(explicit: str | None, *sources: str | Path | None) -> str:
    """The trigger to use: the one stored with the ``sources`` that carry stoplens metadata
    (see `stored_trigger`), else ``explicit``, else `DEFAULT_TRIGGER`. An ``explicit``
    trigger that differs from a stored one is an error, and so are sources trained with
    different triggers."""
    found = [(str(src), t) for src in sources if (t := stored_trigger(src)) is not None]
    if len({t for _, t in found}) > 1:
        listed = ", ".join(f"{src} ({t!r})" for src, t in found)
        raise StoplensError(
            f"the models were trained with different triggers: {listed}; pass models "
            "fine-tuned with the same trigger"
        )
    if not found:
        return explicit if explicit is not None else DEFAULT_TRIGGER
    src, t = found[0]
    if explicit is not None and explicit != t:
        raise StoplensError(
            f"--trigger {explicit!r} conflicts with {t!r}, the trigger {src} was trained with "
            f"(its {ADAPTER_META}); omit --trigger or pass --trigger {t!r}"
        )
    return t


def rebase_adapters(built: Path, final: Path) -> int:
    """Before a folder tree built in ``built`` is renamed to ``final``: every peft
    ``adapter_config.json`` (and ``stoplens_adapter.json``) under it that names a base inside
    ``built`` is rewritten to name the same base inside ``final``, so that plain
    ``AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` finds it after the rename.
    Returns the number of files rewritten."""
    from stoplens.io import atomic_write_json

    built, final = Path(built).resolve(), Path(final).resolve()
    n = 0
    for path in sorted(built.rglob("adapter_config.json")) + sorted(built.rglob(ADAPTER_META)):
        doc = _read_json(path)
        key = "base_model_name_or_path" if path.name == "adapter_config.json" else "base_model"
        base = doc.get(key)
        if not base:
            continue
        try:
            rel = Path(base).resolve().relative_to(built)
        except ValueError:  # a base outside the built tree: already final
            continue
        doc[key] = str(final / rel)
        atomic_write_json(path, doc)
        n += 1
    return n


def _adapter_base(adapter_dir: Path) -> str:
    meta_path = adapter_dir / ADAPTER_META
    if meta_path.is_file():
        meta = _read_json(meta_path)
        rel = meta.get("base_relpath")
        if rel and (adapter_dir / rel).is_dir():
            return str((adapter_dir / rel).resolve())
        if meta.get("base_model"):
            return str(meta["base_model"])
    base = _read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        raise StoplensError(
            f"adapter {adapter_dir} does not name its base model; pass it: "
            "load_model(BASE, adapter=...) / `--base BASE --adapter ...`"
        )
    return str(base)


# ---------------------------------------------------------------------------------------------
# Fail fast: resolve a model without loading its weights


def preflight(
    model: str | Path,
    *,
    what: str = "--model",
    trigger: str | None = None,
    fine_tuned: bool = False,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> str:
    """Resolve ``model`` and load its config and tokenizer (no weights), so that a bad model
    fails before any stage writes data. Returns what to load it from: the cached folder of a
    ``.gguf`` file (built here on first use), else the resolved path or hub id.

    An adapter (or a `stoplens train` output) is checked on the base it names. With
    ``trigger``: a ``fine_tuned`` model's tokenizer must hold it as one token; a base model's
    tokenizer must be able to take it as one token (checked on a throwaway copy).
    """
    from transformers import AutoConfig

    ref = _resolve(model, what, progress=progress)
    base_ref, tok_src = ref, ref.ref
    if ref.local:
        path = resolve_trained_dir(Path(ref.ref))
        if (path / "adapter_config.json").is_file():
            base_ref = _resolve(_adapter_base(path), f"base model of {what}", progress=progress)
            if base_ref.local:
                base_ref = _Ref(str(resolve_trained_dir(Path(base_ref.ref))), local=True)
            has_tok = any(path.glob("tokenizer*.json"))
            tok_src = str(path) if has_tok else base_ref.ref
        else:
            base_ref = _Ref(str(path), local=True)
            tok_src = base_ref.ref
    offline = base_ref.local_files_only or base_ref.local
    try:
        AutoConfig.from_pretrained(
            base_ref.ref, local_files_only=offline, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoplensError(
            f"{what} {model}: could not load the model config of {base_ref.ref} ({first}); "
            "pass a model folder saved with save_pretrained, a .gguf file or a hub id"
        ) from None
    tok_offline = offline if tok_src == base_ref.ref else True
    tok = _load_tok(tok_src, tok_offline, trust_remote_code)
    if trigger is not None:
        if fine_tuned:
            if not has_trigger(tok, trigger):
                n = len(tok.encode(trigger, add_special_tokens=False))
                raise TriggerError(
                    f"{what} {model} was not fine-tuned with trigger {trigger!r} (it is {n} "
                    "tokens in its tokenizer); pass the trigger it was trained with (--trigger)"
                )
        elif not has_trigger(tok, trigger):
            add_trigger(tok, None, trigger)  # raises TriggerError if it cannot be one token
    is_file = ref.local and Path(model).expanduser().is_file()  # a .gguf file: its folder
    return ref.ref if is_file else str(model)


# ---------------------------------------------------------------------------------------------
# Loading


def _from_pretrained(ref: _Ref, dtype, device_map, trust_remote_code: bool) -> nn.Module:
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
        raise StoplensError(
            f"could not load a causal LM from {ref.ref}: {first}; pass a decoder-only causal LM "
            "saved with save_pretrained (safetensors)"
            + (
                ""
                if trust_remote_code
                else ", or pass trust_remote_code=True if it needs custom code"
            )
        ) from None


def _load_tok(path_or_id: str, local_files_only: bool, trust_remote_code: bool):
    try:
        return load_tokenizer(
            path_or_id, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoplensError(
            f"could not load the tokenizer of {path_or_id}: {first}; save the tokenizer with "
            "the model (tokenizer.save_pretrained)"
        ) from None


def _check_adapter_matches(adapter_dir: Path, base: nn.Module, base_name: str) -> None:
    meta_path = adapter_dir / ADAPTER_META
    if not meta_path.is_file():
        return
    meta = _read_json(meta_path)
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
    ``dtype``/``device``: default bf16 on CUDA, fp32 on CPU. ``device_map`` (e.g. "auto") is
    passed to transformers and then ``device`` is not applied. ``merge``: merge the adapter
    into the (freshly loaded) base for inference (`stoplens.models.merge.merge_adapter`): the
    same outputs within
    float tolerance, without the adapter's extra matmuls in every linear layer.

    Trigger: with ``require_trigger`` (the default; for fine-tuned models) the trigger must be
    one token of the tokenizer, else `TriggerError`. With ``require_trigger=False`` (base
    models) a missing trigger is added exactly as training adds it (mean-initialised row), so
    the base sees the same token ids as the fine-tuned model. ``trigger=None`` skips all this.
    """
    dtype = parse_dtype(dtype)
    if adapter is not None and not Path(adapter).expanduser().is_dir():
        raise StoplensError(
            f"adapter path {adapter} does not exist; pass the folder written by `stoplens train` "
            "(or one of its checkpoints)"
        )
    ref = _resolve(model, "model", progress=progress)
    adapter_dir: Path | None = None
    if ref.local:
        path = resolve_trained_dir(Path(ref.ref))
        if (path / "adapter_config.json").is_file():
            if adapter is not None:
                raise StoplensError(
                    f"{path} is itself an adapter; pass its base as the model and this folder "
                    "as the adapter"
                )
            adapter_dir = path
            ref = _resolve(_adapter_base(path), "base model of the adapter", progress=progress)
            if ref.local:
                ref = _Ref(str(resolve_trained_dir(Path(ref.ref))), local=True)
        else:
            ref = _Ref(str(path), local=True)
    if adapter is not None:
        a = resolve_trained_dir(Path(adapter).expanduser().resolve())
        if not (a / "adapter_config.json").is_file():
            raise StoplensError(
                f"{a} is not a peft adapter (no adapter_config.json); a full / merged model "
                "is passed as the model itself"
            )
        adapter_dir = a

    device_str = str(device) if device is not None else default_device()
    if dtype is None:
        dtype = default_dtype(device_str if device_map is None else default_device())

    base = _from_pretrained(ref, dtype, device_map, trust_remote_code)
    tokenizer = _load_tok(ref.ref, ref.local_files_only or ref.local, trust_remote_code)
    trigger_added = False  # an adapter brings its trained trigger row
    trigger_id: int | None = None
    if adapter_dir is not None:
        # Reproduce training: base tokenizer + the trigger it was trained with added the same
        # way, then the adapter.
        trained_with = _adapter_trigger(adapter_dir) or trigger
        if trained_with is not None and not has_trigger(tokenizer, trained_with):
            add_trigger(tokenizer, base, trained_with)
        if any(adapter_dir.glob("tokenizer*.json")):
            ad_tok = _load_tok(str(adapter_dir), True, trust_remote_code)
            if trigger is not None and has_trigger(ad_tok, trigger):
                tid = find_trigger(ad_tok, trigger)
                rows = embedding_rows(base)
                if tid >= rows:
                    raise StoplensError(
                        f"adapter {adapter_dir} does not match base {ref.ref}: its trigger id "
                        f"{tid} is outside the base's {rows} embedding rows; pass the base it "
                        "was trained on"
                    )
            tokenizer = ad_tok
        _check_adapter_matches(adapter_dir, base, ref.ref)
        model_out = _apply_adapter(base, adapter_dir, ref.ref)
    else:
        model_out = base

    if trigger is not None:
        if has_trigger(tokenizer, trigger):
            trigger_id = find_trigger(tokenizer, trigger)
        elif require_trigger:
            what = f"adapter {adapter_dir}" if adapter_dir else f"model {ref.ref}"
            n = len(tokenizer.encode(trigger, add_special_tokens=False))
            raise TriggerError(
                f"{what} was not fine-tuned with trigger {trigger!r}: it is {n} tokens in its "
                "tokenizer, not one; fine-tune it with `stoplens train`, pass the right "
                "--trigger, or load it as a base model (require_trigger=False)"
            )
        else:
            info = add_trigger(tokenizer, model_out, trigger)
            trigger_id, trigger_added = info.token_id, info.added
        if trigger_id is not None:
            rows = embedding_rows(model_out)
            if trigger_id >= rows:
                raise TriggerError(
                    f"trigger id {trigger_id} is outside the model's {rows} embedding rows; the "
                    "tokenizer does not belong to this model"
                )

    # weights offloaded by a device_map (on the meta device) cannot be merged: keep the adapter
    offloaded = any(p.device.type == "meta" for p in model_out.parameters())
    merged = merge and adapter_dir is not None and not offloaded
    if merged:
        from stoplens.models.merge import merge_adapter

        model_out = merge_adapter(model_out, trigger_id)
    if device_map is None:
        model_out = model_out.to(device_str)
    model_out.eval()
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
