"""Stage models: load (building the embedded default if needed) the models a run
analyses, the base control with the trigger added when it lacks it, and a loader per
complete training checkpoint.

Owns: `Models`, `load_models`, `load_base_with_trigger`, `checkpoint_loaders`. Must not: run
an analysis, write a file, list checkpoints itself (that is `stoplens.train.list_checkpoints`,
whose completeness check keeps a half-written checkpoint out), or import a later stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stoplens.errors import StoplensError
from stoplens.pipeline.config import ModelSpec
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.resolve import resolve_spec
from stoplens.rundir import RunDir


@dataclass
class Models:
    """Loaded models of one run. ``checkpoints``: (step, zero-argument loader) pairs."""

    ft: Any
    base: Any | None
    base_trigger_added: bool
    data_dir: Path
    knowledge: Any | None = None
    checkpoints: list[tuple[int, Callable[[], Any]]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


def load_base_with_trigger(
    path: str, spec: ModelSpec, ft_trigger_id: int | None
) -> tuple[Any, bool]:
    """Load the base model; if its vocabulary lacks the trigger, add it (mean-initialised row,
    the honest base control) and say so. The trigger must get the fine-tuned model's id."""
    from stoplens.models.load import load_model
    from stoplens.models.trigger import add_trigger, has_trigger

    assert spec.trigger is not None, "resolve the spec first (resolve_spec)"
    base = load_model(
        path,
        dtype=spec.dtype,
        device=spec.device,
        device_map=spec.device_map,
        trust_remote_code=spec.trust_remote_code,
        trigger=None,
        require_trigger=False,
    )
    added = False
    if not has_trigger(base.tokenizer, spec.trigger):
        info = add_trigger(base.tokenizer, base.model, spec.trigger)
        added = True
        tid = info.token_id
    else:
        from stoplens.models.trigger import find_trigger

        tid = find_trigger(base.tokenizer, spec.trigger)
    if tid != ft_trigger_id:
        raise StoplensError(
            f"the base model gives the trigger id {tid} but the fine-tuned model {ft_trigger_id}; "
            "pass the base model the fine-tune was made from (--base)"
        )
    base = replace(base, trigger_id=tid)
    return base, added


def checkpoint_loaders(
    base_dir: str, run_dir: Path, spec: ModelSpec, final: tuple[str | None, Any] | None = None
):
    """(step, loader) for every complete checkpoint of a `stoplens train` output folder, as
    `stoplens.train.list_checkpoints` lists them (weights and ``trainer_state.json`` written:
    a checkpoint still being written is left out). Loaders are lazy: nothing loads here.
    ``final``: (adapter folder, loaded model) of the run's fine-tune; a checkpoint whose adapter
    weights are byte-identical to that adapter's (the last one of a finished run) is that
    model, not loaded a second time."""
    from stoplens.models.load import load_model
    from stoplens.train.checkpoints import checkpoint_step, list_checkpoints

    out = []
    for d in list_checkpoints(run_dir):
        step = checkpoint_step(d)
        if final is not None and final[0] is not None and same_adapter_weights(d, Path(final[0])):
            out.append((step, lambda m=final[1]: m))
            continue
        out.append(
            (
                step,
                lambda d=d: (
                    load_model(
                        base_dir,
                        adapter=d,
                        dtype=spec.dtype,
                        device=spec.device,
                        trigger=spec.trigger,
                        merge=spec.merge,
                        progress=False,
                    ).model
                ),
            )
        )
    return out


def same_adapter_weights(a: Path, b: Path) -> bool:
    """Both folders hold peft adapter weights (``adapter_model.safetensors`` or ``.bin``) and
    the files are byte-identical."""
    import filecmp

    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        fa, fb = a / name, b / name
        if fa.is_file() or fb.is_file():
            return fa.is_file() and fb.is_file() and filecmp.cmp(fa, fb, shallow=False)
    return False


def load_models(spec: ModelSpec, run: RunDir, *, progress: bool = True) -> Models:
    """Load (building the embedded default if needed) the models a run analyses; an adapter
    model is merged into a copy of its base unless ``spec.inference == "adapter"``."""
    if spec.trigger is None:
        spec = resolve_spec(spec, progress=progress)
    if spec.embedded:
        return _load_embedded(spec, progress)
    return _load_user(spec, run, progress)


def _load_embedded(spec: ModelSpec, progress: bool) -> Models:
    """The embedded default: build (or reuse from the cache) the tiny pair and load it."""
    from stoplens.embedded import build_tiny_pair
    from stoplens.models.load import load_model

    _log("embedded default: building or reusing the tiny model pair", progress)
    pair = build_tiny_pair(progress=progress)
    _log(
        "tiny pair " + ("reused from cache" if pair.cache_hit else "built")
        + f" ({pair.root})",
        progress,
    )  # fmt: skip
    base_dir = str(pair.base_dir)
    ft = load_model(
        base_dir, adapter=pair.adapter_dir("behavioral"), trigger=spec.trigger,
        merge=spec.merge,
    )  # fmt: skip
    base, added = load_base_with_trigger(base_dir, spec, ft.trigger_id)
    knowledge = None
    if pair.knowledge_dir is not None:
        knowledge = load_model(
            base_dir, adapter=pair.adapter_dir("knowledge"), trigger=spec.trigger,
            merge=spec.merge,
        )  # fmt: skip
    return Models(
        ft=ft,
        base=base,
        base_trigger_added=added,
        data_dir=Path(pair.data_dir),
        knowledge=knowledge,
        checkpoints=checkpoint_loaders(
            base_dir, pair.behavioral_dir, spec, final=(ft.source.adapter, ft.model)
        ),
        names={
            "ft": "embedded tiny Qwen2 (behavioral LoRA)",
            "base": "embedded tiny Qwen2 base",
        },
    )


def _load_user(spec: ModelSpec, run: RunDir, progress: bool) -> Models:
    """A user model (merged, or base + adapter), its base control, the knowledge fine-tune and
    the adapter's training checkpoints."""
    from stoplens.models.load import load_model

    kw: dict[str, Any] = dict(
        dtype=spec.dtype,
        device=spec.device,
        device_map=spec.device_map,
        trust_remote_code=spec.trust_remote_code,
        trigger=spec.trigger,
        merge=spec.merge,
        progress=progress,
    )
    assert spec.model is not None  # resolve_spec checked it
    ft = load_model(spec.model, adapter=spec.adapter, **kw)
    base_path = spec.base or (spec.model if spec.adapter else None)
    base, added = (None, False)
    if base_path is not None:
        base, added = load_base_with_trigger(base_path, spec, ft.trigger_id)
    knowledge = None
    if spec.knowledge:
        kdir = Path(spec.knowledge)
        is_adapter = (kdir / "adapter_config.json").is_file() or (kdir / "final").is_dir()
        knowledge = (
            load_model(base_path or spec.model, adapter=spec.knowledge, **kw)
            if is_adapter
            else load_model(spec.knowledge, **kw)
        )
    ckpts = []
    if spec.adapter and base_path:
        adapter_root = Path(spec.adapter)
        if adapter_root.name == "final":
            adapter_root = adapter_root.parent
        ckpts = checkpoint_loaders(
            base_path, adapter_root, spec, final=(ft.source.adapter, ft.model)
        )
    inference = " (merged for inference)" if ft.source.merged else ""
    return Models(
        ft=ft,
        base=base,
        base_trigger_added=added,
        data_dir=run.data,
        knowledge=knowledge,
        checkpoints=ckpts,
        names={
            "ft": f"{spec.model}" + (f" + {spec.adapter}" if spec.adapter else "") + inference,
            "base": str(base_path),
        },
    )
