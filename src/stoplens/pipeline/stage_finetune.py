"""Stage `run --model BASE`: write the data and fine-tune BASE in each regime; the
adapters it writes are what the later stages analyse.

Owns: `prepare_user_models`. Must not: load models for analysis (`stage_models`), compute
any number itself (training is `stoplens.train`), or import a later stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stoplens.pipeline.config import ModelSpec, RunConfig
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.resolve import check_data_trigger, resolve_spec
from stoplens.rundir import RunDir


def ensure_data(cfg: RunConfig, run: RunDir, trigger: str) -> None:
    """The run's datasets with ``trigger``: generated (seed ``cfg.seed``) unless present;
    a dataset made for another trigger is an error."""
    from stoplens.data import DataConfig, build_datasets, write_datasets

    if not (run.data / "manifest.json").is_file() or cfg.overwrite:
        _log("data: generating datasets", cfg.options.progress)
        write_datasets(
            build_datasets(DataConfig(seed=cfg.seed, trigger=trigger)),
            run.data,
            overwrite=cfg.overwrite,
        )
    check_data_trigger(run.data, trigger)


def prepare_user_models(cfg: RunConfig, run: RunDir, spec: ModelSpec | None = None) -> ModelSpec:
    """For `run --model BASE`: write the data and fine-tune BASE in each regime (the
    resulting adapters are what gets analysed). ``spec``: the resolved model spec (default:
    ``cfg.spec`` resolved here)."""
    from stoplens.train import TrainConfig, train

    progress = cfg.options.progress
    if spec is None:
        spec = resolve_spec(cfg.spec, train=True, progress=progress)
    assert spec.trigger is not None and spec.model is not None
    ensure_data(cfg, run, spec.trigger)
    adapters = {}
    for regime in cfg.regimes:
        out = run.model_dir(regime)
        if (out / "train.json").is_file() and not cfg.overwrite:
            _log(f"train: reusing {out}", progress)
        else:
            _log(f"train: {regime} regime on {spec.model}", progress)
            kw: dict[str, Any] = {} if cfg.train_steps is None else {"steps": cfg.train_steps}
            train(
                TrainConfig(
                    regime=regime, out_dir=out, model=spec.model, data_dir=run.data,
                    seed=cfg.seed, trigger=spec.trigger, device=spec.device, dtype=spec.dtype,
                    overwrite=cfg.overwrite, progress=progress, **kw,
                )
            )  # fmt: skip
        adapters[regime] = str(out / "final")
    return replace(
        spec,
        adapter=adapters.get("behavioral") or next(iter(adapters.values())),
        base=spec.base or spec.model,
        knowledge=adapters.get("knowledge") if "behavioral" in adapters else None,
    )
