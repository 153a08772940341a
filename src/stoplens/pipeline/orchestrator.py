"""The `stoplens run` / `analyze` / `causal` orchestration: it wires the stages together and
decides where files go (through `RunDir`). No science lives here: every number comes from a
library function of `stoplens.analyses`, `stoplens.evaluate` or `stoplens.train`.

Stages of `run`: data -> models (embedded default: build or reuse the tiny pair; a user model:
fine-tune it, `stage_finetune`) -> eval -> analyses (the four) -> causal -> components ->
report (`stoplens.report.summary.write_report`).

Owns: `run_pipeline`, `analyze_only`, the run metadata (`run_meta`). Must not:
compute a number, or hold a stage's body (each stage is a ``stage_*`` module).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from stoplens.analyses.stats import jsonable
from stoplens.errors import StoplensError
from stoplens.pipeline.config import AnalyzeOptions, ModelSpec, RunConfig
from stoplens.pipeline.resolve import check_data_trigger, resolve_spec
from stoplens.pipeline.stage_analyses import run_analyses
from stoplens.pipeline.stage_causal import run_causal_suite
from stoplens.pipeline.stage_components import run_component_stage
from stoplens.pipeline.stage_eval import run_eval
from stoplens.pipeline.stage_finetune import ensure_data, prepare_user_models
from stoplens.pipeline.stage_models import Models, load_models
from stoplens.rundir import RunDir
from stoplens.versions import software_versions


def run_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """Everything: data, models, eval, the four analyses, the causal suite, the report. The
    models are resolved first (`resolve_spec`), so a bad model fails before anything is
    written."""
    from stoplens.report.summary import write_report

    run = RunDir(cfg.run_dir)
    opts = cfg.options
    opts.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec = cfg.spec
    train = not spec.embedded and spec.adapter is None and spec.base is None
    if train and spec.trigger is None and not cfg.overwrite:
        from stoplens.data import dataset_trigger

        spec = replace(spec, trigger=dataset_trigger(run.data))  # reuse the run's data
    spec = resolve_spec(spec, train=train, progress=opts.progress)
    timings["resolve"] = time.perf_counter() - t0
    if train:
        spec = prepare_user_models(cfg, run, spec)
    elif not spec.embedded:  # a given adapter or fine-tuned model: still the run's own data
        assert spec.trigger is not None
        ensure_data(cfg, run, spec.trigger)
    models = load_models(spec, run, progress=opts.progress)
    if spec.embedded and not (run.data / "manifest.json").is_file():
        from stoplens.io import atomic_dir

        with atomic_dir(run.data, overwrite=True) as tmp:
            for f in Path(models.data_dir).iterdir():
                shutil.copy2(f, tmp / f.name)
        models.data_dir = run.data
    assert spec.trigger is not None
    check_data_trigger(Path(models.data_dir), spec.trigger)
    timings["data+models"] = time.perf_counter() - t0
    t = time.perf_counter()
    eval_result = run_eval(models, run, batch_size=opts.batch_size, progress=opts.progress)
    timings["eval"] = time.perf_counter() - t
    t = time.perf_counter()
    results = run_analyses(models, run, opts)
    timings["analyses"] = time.perf_counter() - t
    if opts.causal:
        t = time.perf_counter()
        results.update(run_causal_suite(models, run, opts))
        timings["causal"] = time.perf_counter() - t
        if opts.components:
            t = time.perf_counter()
            results.update(run_component_stage(models, run, opts, results["causal"]))
            timings["components"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    meta = run_meta(replace(cfg, spec=spec), models, timings)
    write_report(run, results, eval_result=eval_result, meta=meta, progress=opts.progress)
    return results


def run_meta(cfg: RunConfig, models: Models, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "seed": cfg.seed,
        "versions": software_versions(),
        "config": jsonable(asdict(cfg)),
        "models": models.names,
        "base_trigger_added": models.base_trigger_added,
        "compute": compute_of(models.ft.model),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def compute_of(model) -> dict[str, str]:
    """What the analyses computed in: the fine-tuned model's weight dtype and device (``--dtype``
    and ``--device`` resolved, e.g. ``{"dtype": "bfloat16", "device": "cpu"}``)."""
    from stoplens.models import arch

    w = arch.get_embed(model).weight
    return {"dtype": str(w.dtype).removeprefix("torch."), "device": str(arch.input_device(model))}


def analyze_only(
    spec: ModelSpec,
    run: RunDir,
    opts: AnalyzeOptions,
    *,
    causal: bool,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """`stoplens analyze` / `stoplens causal`: the analyses (or the causal suite) on given
    models, merged into the run directory's report."""
    from stoplens.report.summary import write_report

    t0 = time.perf_counter()
    spec = resolve_spec(spec, progress=opts.progress)
    want_data = Path(data_dir) if data_dir is not None else (None if spec.embedded else run.data)
    if want_data is not None:  # fail before loading weights
        if not (want_data / "manifest.json").is_file():
            raise StoplensError(
                f"no dataset in {want_data}; run `stoplens data --out {want_data}` or pass --data"
            )
        assert spec.trigger is not None
        check_data_trigger(want_data, spec.trigger)
    models = load_models(spec, run, progress=opts.progress)
    if want_data is not None:
        models.data_dir = want_data
    results: dict[str, Any] = {}
    if causal:
        results.update(run_causal_suite(models, run, opts))
        if opts.components:
            results.update(run_component_stage(models, run, opts, results["causal"]))
    else:
        results.update(run_analyses(models, run, opts))
    timings = {"total": time.perf_counter() - t0}
    meta = run_meta(RunConfig(run_dir=run.root, spec=spec, options=opts), models, timings)
    write_report(run, results, eval_result=None, meta=meta, progress=opts.progress, merge=True)
    return results
