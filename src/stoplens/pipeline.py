"""The `stoplens run` / `analyze` / `causal` orchestration: it wires the stages together and
decides where files go (through `RunDir`). No science lives here: every number comes from a
library function of `stoplens.analyses`, `stoplens.evaluate` or `stoplens.train`.

Stages of `run`: data -> models (embedded default: build or reuse the tiny pair; a user model:
fine-tune it) -> eval -> analyses (the four) -> causal -> components -> report.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from stoplens.analyses.stats import jsonable
from stoplens.errors import StoplensError
from stoplens.progress import stage
from stoplens.rundir import RunDir

ANALYSES = ("layerwise", "lowrank", "logit-lens", "diff-lens")
CONTROL_KINDS = ("word", "near_miss", "random_word", "random_vocab")
INFERENCE = ("merged", "adapter")


@dataclass(frozen=True)
class ModelSpec:
    """Which models to analyse. All None: the embedded default.

    ``model``: the fine-tuned model (a merged model dir / hub id / .gguf file), or the base
    when ``adapter`` is given. ``base``: the base model for the base-vs-fine-tuned control
    (default: ``model`` when an adapter is given). ``knowledge``: an optional second
    fine-tune (knowledge regime) of the same base, as an adapter dir or a model dir.
    ``trigger``: None means the trigger the models were trained with (their
    ``stoplens_adapter.json``), else ``$STOP``; `resolve_spec` fixes it. ``inference``:
    "merged" runs eval, analyses and causal suite on a merged copy of an adapter model (no
    extra LoRA matmuls); "adapter" on the unmerged peft model.
    """

    model: str | None = None
    adapter: str | None = None
    base: str | None = None
    knowledge: str | None = None
    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    trust_remote_code: bool = False
    trigger: str | None = None
    inference: str = "merged"

    @property
    def embedded(self) -> bool:
        return self.model is None and self.adapter is None

    @property
    def merge(self) -> bool:
        return self.inference == "merged"


@dataclass(frozen=True)
class AnalyzeOptions:
    """Options of the analyses and the causal suite."""

    only: tuple[str, ...] = ANALYSES
    control_kind: str = "word"
    layers: tuple[int, ...] | None = None
    n_pairs: int | None = None
    batch_size: int = 32
    seed: int = 0
    causal: bool = True
    components: bool = True  # the component suite after the causal suite
    checkpoints: bool = True
    progress: bool = True

    def validate(self) -> None:
        bad = [a for a in self.only if a not in ANALYSES]
        if bad:
            raise StoplensError(
                f"unknown analysis {bad[0]!r}; choose from {', '.join(ANALYSES)} (e.g. --only layerwise,logit-lens)"
            )
        if self.control_kind not in CONTROL_KINDS:
            raise StoplensError(
                f"unknown control kind {self.control_kind!r}; choose one of {', '.join(CONTROL_KINDS)}"
            )
        if self.batch_size < 1:
            raise StoplensError("--batch-size must be at least 1")
        if self.n_pairs is not None and self.n_pairs < 2:
            raise StoplensError("--n-pairs must be at least 2 (64 or more for low-rank claims)")


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


def _log(msg: str, progress: bool) -> None:
    """One stage line (`stoplens.progress.stage`: colored on a terminal, plain in a log)."""
    stage(msg, enabled=progress)


# --- models ---------------------------------------------------------------------------------


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


def resolve_spec(spec: ModelSpec, *, train: bool = False, progress: bool = True) -> ModelSpec:
    """Fail fast, before any stage writes: every model of ``spec`` is resolved (a ``.gguf``
    file becomes its cached Hugging Face folder, a hub id must be reachable or cached) and its
    config and tokenizer load, without weights; the trigger is fixed (the models' stoplens
    metadata, else ``spec.trigger``, else ``$STOP``; a conflict is an error) and checked
    against every tokenizer. ``train``: ``spec.model`` is a base that `run` will fine-tune."""
    from stoplens.models.load import preflight, resolve_trigger

    if spec.inference not in INFERENCE:
        raise StoplensError(
            f"--inference {spec.inference!r} is unknown; use one of {', '.join(INFERENCE)}"
        )
    if spec.embedded:
        from stoplens.models.tiny import TinyConfig

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


def _checkpoint_loaders(base_dir: str, run_dir: Path, spec: ModelSpec):
    """(step, loader) for every complete checkpoint of a `stoplens train` output folder."""
    from stoplens.models.load import load_model
    from stoplens.train.run import list_checkpoints

    out = []
    for d in list_checkpoints(run_dir):
        step = int(d.name.rsplit("-", 1)[-1])
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


def load_models(spec: ModelSpec, run: RunDir, *, progress: bool = True) -> Models:
    """Load (building the embedded default if needed) the models a run analyses; an adapter
    model is merged into a copy of its base unless ``spec.inference == "adapter"``."""
    from stoplens.models.load import load_model

    if spec.trigger is None:
        spec = resolve_spec(spec, progress=progress)
    if spec.embedded:
        from stoplens.models.tiny import build_tiny_pair

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
            checkpoints=_checkpoint_loaders(base_dir, pair.behavioral_dir, spec),
            names={
                "ft": "embedded tiny Qwen2 (behavioral LoRA)",
                "base": "embedded tiny Qwen2 base",
            },
        )
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
        ckpts = _checkpoint_loaders(base_path, adapter_root, spec)
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


# --- data -----------------------------------------------------------------------------------


def pair_records(data_dir: Path, split: str, control_kind: str, n: int | None = None) -> list[dict]:
    """Contrast-pair records of one split and control kind ("random_vocab" uses the word
    records; the control is then drawn from the vocabulary at encoding time)."""
    from stoplens.data import load_pairs, pairs_file

    path = Path(data_dir) / pairs_file(split)
    recs = load_pairs(path)
    kind = "word" if control_kind == "random_vocab" else control_kind
    recs = [r for r in recs if r.get("control_kind") == kind]
    if not recs:
        raise StoplensError(
            f"{path}: no contrast pairs of control kind {kind!r}; regenerate with `stoplens data`"
        )
    return recs[:n] if n else recs


# --- stages ---------------------------------------------------------------------------------


def run_eval(models: Models, run: RunDir, *, batch_size: int = 32, progress: bool = True):
    """Behavior evaluation on the test split and the out-of-template set; writes
    results/eval.json and its figure."""
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.evaluate import evaluate
    from stoplens.evaluate.report import write_eval

    if models.base is None:
        raise StoplensError("eval needs a base model for the side-by-side comparison; pass --base")
    records = load_behavioral(models.data_dir / behavioral_file("test"))
    _log(f"eval: {len(records)} held-out records, base vs fine-tuned", progress)
    result = evaluate(
        models.ft, models.base, records, batch_size=batch_size, progress=progress,
        out_of_template=True,
    )  # fmt: skip
    write_eval(result, run.results / "eval.json", run.report / "eval_stop_scores.png")
    if progress:
        from rich.console import Console

        from stoplens.evaluate import summary_table

        Console().print(summary_table(result))
    return result


def run_analyses(models: Models, run: RunDir, opts: AnalyzeOptions) -> dict[str, Any]:
    """The four analyses on the test-split contrast pairs (activations cached in the run
    directory, so `--only` reuses them)."""
    from stoplens.analyses.activations import capture_delta_set
    from stoplens.analyses.diff_lens import diff_lens
    from stoplens.analyses.layerwise import layerwise_delta
    from stoplens.analyses.logit_lens import logit_lens_delta
    from stoplens.analyses.lowrank import lowrank

    opts.validate()
    recs = pair_records(models.data_dir, "test", opts.control_kind, opts.n_pairs)
    want_base = models.base is not None and "diff-lens" in opts.only
    _log(
        f"analyses: capturing activations for {len(recs)} test pairs ({opts.control_kind} controls)",
        opts.progress,
    )
    ds = capture_delta_set(
        models.ft.model,
        models.ft.tokenizer,
        models.ft.trigger_id,
        recs,
        base=models.base.model if models.base is not None else None,
        base_trigger_added=models.base_trigger_added,
        layers=opts.layers,
        random_vocab=opts.control_kind == "random_vocab",
        seed=opts.seed,
        batch_size=opts.batch_size,
        cache_dir=run.cache,
        progress=opts.progress,
    )
    out: dict[str, Any] = {"delta_set": ds}
    from stoplens.analyses.specificity import trigger_specificity

    tok = models.ft.tokenizer
    out["specificity"] = trigger_specificity(
        models.ft.model,
        tok,
        ds.pairs,
        trigger_id=models.ft.trigger_id,
        eos_id=models.ft.eos_id,
        fixed_id=None if ds.fixed_token is None else ds.fixed_token[0],
        pad_id=tok.pad_token_id if tok.pad_token_id is not None else models.ft.eos_id,
        batch_size=opts.batch_size,
        seed=opts.seed,
        progress=opts.progress,
    )
    if "layerwise" in opts.only:
        out["layerwise"] = layerwise_delta(ds)
    if "lowrank" in opts.only:
        out["lowrank"] = lowrank(ds)
    if "logit-lens" in opts.only:
        out["logit_lens"] = logit_lens_delta(
            models.ft.model, ds, models.ft.tokenizer, eos_id=models.ft.eos_id
        )
    if want_base and ds.has_base:
        out["diff_lens"] = diff_lens(
            models.ft.model,
            ds,
            models.ft.tokenizer,
            eos_id=models.ft.eos_id,
            base_model=models.base.model if models.base is not None else None,
        )
    from stoplens.analyses.pair_table import pair_table  # the report's per-pair drill-down

    out["pair_table"] = pair_table(
        models.ft.model, ds, models.ft.tokenizer, eos_id=models.ft.eos_id,
        batch_size=opts.batch_size, progress=opts.progress,
    )  # fmt: skip
    return out


def _encode(models: Models, loaded, split: str, opts: AnalyzeOptions):
    from stoplens.capture.pairs import encode_pairs

    recs = pair_records(models.data_dir, split, opts.control_kind)
    return encode_pairs(
        loaded.tokenizer,
        recs,
        loaded.trigger_id,
        random_vocab=opts.control_kind == "random_vocab",
        seed=opts.seed,
    ), recs


def run_causal_suite(models: Models, run: RunDir, opts: AnalyzeOptions) -> dict[str, Any]:
    """Activation patching, directions (train) / selection (val) / effects (test), held-out
    placements, base control, knowledge-vs-behavioral and checkpoint dynamics."""
    from stoplens.analyses.causal import CausalConfig, run_causal
    from stoplens.analyses.dynamics import checkpoint_dynamics
    from stoplens.analyses.generalization import cross_model
    from stoplens.analyses.results import Nulls
    from stoplens.capture.pairs import encode_pairs
    from stoplens.interventions.cache import OutcomeCache
    from stoplens.interventions.readout import Readout

    ft = models.ft
    pad = ft.tokenizer.pad_token_id if ft.tokenizer.pad_token_id is not None else ft.eos_id
    train, train_recs = _encode(models, ft, "train", opts)
    val, _ = _encode(models, ft, "val", opts)
    test, test_recs = _encode(models, ft, "test", opts)
    ctrl2 = encode_pairs(ft.tokenizer, test_recs, ft.trigger_id, control_field="control2")
    ctrl2_train = encode_pairs(ft.tokenizer, train_recs, ft.trigger_id, control_field="control2")
    cfg = CausalConfig(seed=opts.seed, batch_size=opts.batch_size)
    ft_cache = OutcomeCache(ft.model, ft.eos_id)  # shared by the causal suite and cross_model
    _log(
        f"causal: patching, directions and steering on {len(train)}/{len(val)}/{len(test)} train/val/test pairs",
        opts.progress,
    )
    result = run_causal(
        ft.model,
        train,
        val,
        test,
        eos_id=ft.eos_id,
        pad_id=pad,
        config=cfg,
        base=models.base.model if models.base is not None else None,
        control_pairs=_null_pairs(train, ctrl2_train),
        tokenizer=ft.tokenizer,
        cache=ft_cache,
        progress=opts.progress,
    )
    out: dict[str, Any] = {"causal": result, "null_test_pairs": len(ctrl2)}
    if models.knowledge is not None and result.selection is not None:
        _log("causal: knowledge-trained vs behavior-trained directions", opts.progress)
        k_cache = OutcomeCache(models.knowledge.model, ft.eos_id)
        k_result = run_causal(
            models.knowledge.model,
            train,
            val,
            test,
            eos_id=ft.eos_id,
            pad_id=pad,
            config=replace(cfg, patch_max_pairs=16, n_random=20, n_random_heldout=20),
            tokenizer=ft.tokenizer,
            cache=k_cache,
        )
        out["causal_knowledge"] = k_result
        if k_result.selection is not None:
            out["cross_regime"] = cross_model(
                Readout(ft.model, ft.eos_id, pad, opts.batch_size),
                Readout(models.knowledge.model, ft.eos_id, pad, opts.batch_size),
                result.selection,
                k_result.selection,
                test,
                labels=("behavioral", "knowledge"),
                nulls=Nulls(n_random=16, seed=opts.seed),
                caches=(ft_cache, k_cache),
            )
    if opts.checkpoints and models.checkpoints and result.selection is not None:
        _log(f"causal: {len(models.checkpoints)} training checkpoints", opts.progress)
        out["checkpoints"] = checkpoint_dynamics(
            models.checkpoints,
            test,
            eos_id=ft.eos_id,
            layer=result.selection.layer,
            pad_id=pad,
            direction=result.selection.direction,
            fit_pairs=train,
            metrics=_checkpoint_metrics(models, opts),
            batch_size=opts.batch_size,
        )
    return out


def run_component_stage(
    models: Models, run: RunDir, opts: AnalyzeOptions, causal
) -> dict[str, Any]:
    """Heads and MLPs, subspaces, generations under intervention and the weight view, on
    the causal suite's selected direction; writes the direction artifact and the
    generations into the run directory."""
    from stoplens.analyses.component_suite import (
        ComponentSuiteConfig,
        run_component_suite,
        suite_artifact,
    )
    from stoplens.analyses.components import ComponentConfig
    from stoplens.analyses.subspace import SubspaceConfig
    from stoplens.capture.pairs import encode_pairs
    from stoplens.interventions import save_directions
    from stoplens.io import atomic_write_jsonl

    ft = models.ft
    pad = ft.tokenizer.pad_token_id if ft.tokenizer.pad_token_id is not None else ft.eos_id
    train, _ = _encode(models, ft, "train", opts)
    test, test_recs = _encode(models, ft, "test", opts)
    ctrl2 = encode_pairs(ft.tokenizer, test_recs, ft.trigger_id, control_field="control2")
    kw: dict[str, Any] = dict(seed=opts.seed, batch_size=opts.batch_size)
    cfg = ComponentSuiteConfig(patching=ComponentConfig(**kw), subspace=SubspaceConfig(**kw))
    _log(f"components: heads, MLPs and subspaces on {len(test)} test pairs", opts.progress)
    suite = run_component_suite(
        ft.model, train, test, selection=causal.selection, eos_id=ft.eos_id, pad_id=pad,
        null_pairs=_null_pairs(test, ctrl2),
        base=models.base.model if models.base is not None else None,
        trigger_id=ft.trigger_id, tokenizer=ft.tokenizer, config=cfg, progress=opts.progress,
    )  # fmt: skip
    trigger = str(ft.tokenizer.convert_ids_to_tokens(ft.trigger_id))  # the token as trained
    art = suite_artifact(
        ft.model, causal.selection, suite, trigger=trigger, name=models.names.get("ft")
    )
    save_directions(run.directions_file, art)
    if suite.generations is not None:
        atomic_write_jsonl(run.generations_file, [e.to_dict() for e in suite.generations.examples])
    return {"components": suite}


def _null_pairs(pairs, ctrl2):
    from stoplens.capture.pairs import swap_pairs

    null = swap_pairs(pairs, ctrl2)
    return null if len(null) else None


def _checkpoint_metrics(models: Models, opts: AnalyzeOptions) -> dict[str, Callable]:
    """Correlational key figures per checkpoint: layerwise peak layer, top-1 Δ energy share at
    that layer, EOS rank of the Δ logit lens at the last layer (on a subsample of test pairs)."""
    from stoplens.analyses.activations import capture_delta_set
    from stoplens.analyses.layerwise import layerwise_delta
    from stoplens.analyses.logit_lens import logit_lens_delta
    from stoplens.analyses.lowrank import lowrank

    recs = pair_records(models.data_dir, "test", opts.control_kind, 64)
    memo: dict[int, dict[str, float | None]] = {}

    def compute(step: int, model) -> dict[str, float | None]:
        if step not in memo:
            ds = capture_delta_set(
                model, models.ft.tokenizer, models.ft.trigger_id, recs,
                batch_size=opts.batch_size, progress=False,
            )  # fmt: skip
            lw = layerwise_delta(ds)
            lr = lowrank(ds)
            ll = logit_lens_delta(model, ds, models.ft.tokenizer, eos_id=models.ft.eos_id)
            peak = int(lw.summary["last"].peak_layer_rel)
            memo[step] = {
                "layerwise_peak": float(peak),
                "top1_energy_share": float(lr.trigger.energy_top1.value[lr.layers.index(peak)]),
                "eos_rank": float(ll.trigger.eos_rank[-1]),
            }
        return memo[step]

    return {
        k: (lambda step, model, k=k: compute(step, model)[k])
        for k in ("layerwise_peak", "top1_energy_share", "eos_rank")
    }


# --- the whole run --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    run_dir: Path = Path("runs/default")
    spec: ModelSpec = field(default_factory=ModelSpec)
    options: AnalyzeOptions = field(default_factory=AnalyzeOptions)
    train_steps: int | None = None
    regimes: tuple[str, ...] = ("behavioral",)
    seed: int = 0
    overwrite: bool = False


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("stoplens", "torch", "transformers", "peft", "accelerate", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def prepare_user_models(cfg: RunConfig, run: RunDir, spec: ModelSpec | None = None) -> ModelSpec:
    """For `run --model BASE`: write the data and fine-tune BASE in each regime (the
    resulting adapters are what gets analysed). ``spec``: the resolved model spec (default:
    ``cfg.spec`` resolved here)."""
    from stoplens.data import DataConfig, build_datasets, write_datasets
    from stoplens.train import TrainConfig, train

    progress = cfg.options.progress
    if spec is None:
        spec = resolve_spec(cfg.spec, train=True, progress=progress)
    assert spec.trigger is not None and spec.model is not None
    if not (run.data / "manifest.json").is_file() or cfg.overwrite:
        _log("data: generating datasets", progress)
        write_datasets(
            build_datasets(DataConfig(seed=cfg.seed, trigger=spec.trigger)),
            run.data,
            overwrite=cfg.overwrite,
        )
    check_data_trigger(run.data, spec.trigger)
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
        "versions": versions(),
        "config": jsonable(asdict(cfg)),
        "models": models.names,
        "base_trigger_added": models.base_trigger_added,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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


__all__: Sequence[str] = (
    "ANALYSES",
    "AnalyzeOptions",
    "ModelSpec",
    "Models",
    "RunConfig",
    "analyze_only",
    "load_models",
    "run_analyses",
    "run_causal_suite",
    "run_component_stage",
    "run_eval",
    "run_pipeline",
)
