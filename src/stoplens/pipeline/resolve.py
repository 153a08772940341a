"""Fail fast: resolve every model of a `ModelSpec` (and its trigger) before any stage
writes, and check that a dataset was made with the models' trigger.

Owns: `resolve_spec`, `check_data_trigger`. Must not: load weights, write files, or import a
later stage of the pipeline.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from stoplens.errors import StoplensError
from stoplens.pipeline.config import INFERENCE, ModelSpec


def resolve_spec(spec: ModelSpec, *, train: bool = False, progress: bool = True) -> ModelSpec:
    """Fail fast, before any stage writes: every model of ``spec`` is resolved (a ``.gguf``
    file becomes its cached Hugging Face folder, a hub id must be reachable or cached) and its
    config and tokenizer load, without weights; the trigger is fixed (the models' stoplens
    metadata, else ``spec.trigger``, else ``$STOP``; a conflict is an error) and checked
    against every tokenizer. ``train``: ``spec.model`` is a base that `run` will fine-tune."""
    from stoplens.models.adapters import resolve_trigger
    from stoplens.models.preflight import preflight

    if spec.inference not in INFERENCE:
        raise StoplensError(
            f"--inference {spec.inference!r} is unknown; use one of {', '.join(INFERENCE)}"
        )
    if spec.embedded:
        from stoplens.embedded import TinyConfig

        tiny = TinyConfig().data.trigger
        if spec.trigger not in (None, tiny):
            raise StoplensError(
                f"--trigger {spec.trigger!r}: the embedded default pair was trained with "
                f"{tiny!r}; omit --trigger, or fine-tune your own model with it "
                f"(`stoplens run --model M --trigger {spec.trigger!r}`)"
            )
        return replace(spec, trigger=tiny)
    if spec.model is None:
        raise StoplensError("--adapter needs --model (the base model the adapter was trained on)")
    trigger = resolve_trigger(spec.trigger, spec.adapter, spec.model, spec.knowledge, spec.base)
    kw: dict[str, Any] = dict(
        trigger=trigger, trust_remote_code=spec.trust_remote_code, progress=progress
    )
    model = preflight(
        spec.model, what="--model", fine_tuned=not train and spec.adapter is None, **kw
    )
    if spec.adapter is not None:
        preflight(spec.adapter, what="--adapter", fine_tuned=True, **kw)
    base = spec.base
    if base is not None:
        base = preflight(base, what="--base", fine_tuned=False, **kw)
    if spec.knowledge is not None:
        preflight(spec.knowledge, what="--knowledge", fine_tuned=True, **kw)
    return replace(spec, model=model, base=base, trigger=trigger)


def check_data_trigger(data_dir: Path, trigger: str) -> None:
    """The dataset must have been generated with the models' trigger (else no pair aligns)."""
    from stoplens.data import dataset_trigger

    have = dataset_trigger(data_dir)
    if have is not None and have != trigger:
        raise StoplensError(
            f"the dataset {data_dir} was generated with trigger {have!r} but the models use "
            f"{trigger!r}; regenerate it (`stoplens data --trigger {trigger!r}`) or pass --data"
        )
