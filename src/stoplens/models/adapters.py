"""The stoplens metadata of adapters and fine-tuned models (``stoplens_adapter.json``): the
base they were trained on, the trigger they were trained with, and `rebase_adapters` for trees
built under a temporary name.

Owns: `adapter_meta`, `write_adapter_meta`, `stored_trigger`, `resolve_trigger`,
`rebase_adapters`, `embedding_rows`. Must not: load weights (`stoplens.models.load`) or know
module names (asks `stoplens.models.arch`).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from stoplens.errors import StoplensError
from stoplens.models import arch
from stoplens.models.locate import ADAPTER_META, read_json, resolve_trained_dir
from stoplens.models.trigger import DEFAULT_TRIGGER


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


def adapter_trigger(adapter_dir: Path) -> str | None:
    """The trigger recorded in ``adapter_dir``'s stoplens metadata (None without it)."""
    meta_path = adapter_dir / ADAPTER_META
    return read_json(meta_path).get("trigger") if meta_path.is_file() else None


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
        return adapter_trigger(resolve_trained_dir(p))
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
        doc = read_json(path)
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
