"""Fail fast: resolve a model argument and load its config and tokenizer without weights, so a
bad model fails before any stage writes data.

Owns: `preflight` and `load_tok` (a tokenizer, with an error that names the fix). Must not:
load weights (`stoplens.models.load`).
"""

from __future__ import annotations

from pathlib import Path

from stoplens.errors import StoplensError, TriggerError
from stoplens.models.locate import resolve_with_base
from stoplens.models.tokenizer import load_tokenizer
from stoplens.models.trigger import add_trigger, has_trigger


def load_tok(path_or_id: str, local_files_only: bool, trust_remote_code: bool):
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

    ref, base_ref, adapter_dir = resolve_with_base(
        model, what, f"base model of {what}", progress=progress
    )
    tok_src = base_ref.ref
    if adapter_dir is not None and any(adapter_dir.glob("tokenizer*.json")):
        tok_src = str(adapter_dir)
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
    tok = load_tok(tok_src, tok_offline, trust_remote_code)
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
