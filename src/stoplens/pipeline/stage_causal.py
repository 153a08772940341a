"""Stage causal: activation patching, difference-in-means directions (train) / selection
(val) / effects (test), held-out placements, the base control, knowledge-vs-behavioral and
checkpoint dynamics.

Owns: `run_causal_suite`, the split encoding and null pairs it feeds the suite. Must not:
compute a number itself (that is `stoplens.analyses.causal`), write files, or import a
later stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stoplens.pipeline.config import AnalyzeOptions
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.stage_analyses import pair_records
from stoplens.pipeline.stage_models import Models
from stoplens.rundir import RunDir


def encode_split(models: Models, loaded, split: str, opts: AnalyzeOptions):
    from stoplens.capture.encode import encode_pairs

    recs = pair_records(models.data_dir, split, opts.control_kind)
    return encode_pairs(
        loaded.tokenizer,
        recs,
        loaded.trigger_id,
        random_vocab=opts.control_kind == "random_vocab",
        seed=opts.seed,
    ), recs


CHECKPOINT_PAIRS = 32
"""The checkpoint series reads each checkpoint on at most this many TEST pairs (the same
first pairs as its correlational metrics). The series describes how the switch appears;
the final model's effects are judged on every TEST pair. On SmolLM2-135M-Instruct the series
took 10.4 minutes with 95 TEST and 224 TRAIN pairs per checkpoint, 4.6 with 64 and 64 (5
checkpoints), and 2.3 for 4 checkpoints once the metrics were computed only where the series
reads them and the last checkpoint read the final model's outcome cache, and 1.6 with 32
read pairs (64 fitting pairs kept) in batches sized against padding."""

CHECKPOINT_FIT_PAIRS = 64
"""Each checkpoint fits its own direction on at most this many TRAIN pairs."""


def _first(pairs, n: int):
    return pairs if len(pairs) <= n else pairs.subset(range(n))


def run_causal_suite(models: Models, run: RunDir, opts: AnalyzeOptions) -> dict[str, Any]:
    """Activation patching, directions (train) / selection (val) / effects (test), held-out
    placements, base control, knowledge-vs-behavioral and checkpoint dynamics."""
    from stoplens.analyses.causal import CausalConfig, run_causal
    from stoplens.analyses.dynamics import checkpoint_dynamics
    from stoplens.capture.encode import encode_pairs
    from stoplens.interventions.cache import OutcomeCache

    ft = models.ft
    pad = ft.tokenizer.pad_token_id if ft.tokenizer.pad_token_id is not None else ft.eos_id
    train, train_recs = encode_split(models, ft, "train", opts)
    val, _ = encode_split(models, ft, "val", opts)
    test, test_recs = encode_split(models, ft, "test", opts)
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
        control_pairs=null_pairs(train, ctrl2_train),
        tokenizer=ft.tokenizer,
        cache=ft_cache,
        progress=opts.progress,
    )
    out: dict[str, Any] = {"causal": result, "null_test_pairs": len(ctrl2)}
    if models.knowledge is not None and result.selection is not None:
        out.update(
            _knowledge_vs_behavioral(models, opts, (train, val, test), cfg, result, ft_cache)
        )
    if opts.checkpoints and models.checkpoints and result.selection is not None:
        _log(f"causal: {len(models.checkpoints)} training checkpoints", opts.progress)
        out["checkpoints"] = checkpoint_dynamics(
            models.checkpoints,
            _first(test, CHECKPOINT_PAIRS),
            eos_id=ft.eos_id,
            layer=result.selection.layer,
            pad_id=pad,
            direction=result.selection.direction,
            fit_pairs=_first(train, CHECKPOINT_FIT_PAIRS),
            metrics=_checkpoint_metrics(models, opts),
            batch_size=opts.batch_size,
            caches=(ft_cache,),
            progress=opts.progress,
        )
    return out


def _knowledge_vs_behavioral(
    models: Models, opts: AnalyzeOptions, splits, cfg, result, ft_cache
) -> dict[str, Any]:
    """The causal suite on the knowledge-trained model (lighter settings) and, when both
    select a direction, the cross-regime comparison of the two directions."""
    from stoplens.analyses.causal import run_causal
    from stoplens.analyses.generalization import cross_model
    from stoplens.analyses.results import Nulls
    from stoplens.interventions.cache import OutcomeCache
    from stoplens.interventions.readout import Readout

    ft = models.ft
    assert models.knowledge is not None
    pad = ft.tokenizer.pad_token_id if ft.tokenizer.pad_token_id is not None else ft.eos_id
    train, val, test = splits
    out: dict[str, Any] = {}
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
    return out


def null_pairs(pairs, ctrl2):
    from stoplens.capture.encode import swap_pairs

    null = swap_pairs(pairs, ctrl2)
    return null if len(null) else None


def _checkpoint_metrics(models: Models, opts: AnalyzeOptions) -> dict[str, Callable]:
    """Correlational key figures per checkpoint: layerwise peak layer, top-1 Δ energy share at
    that layer, EOS rank of the Δ logit lens at the last layer (on a subsample of test pairs).
    Each is the number the full analysis reports (`layerwise_delta`, `lowrank`,
    `logit_lens_delta`), computed only where the series reads it: the full lowrank and logit
    lens over every layer, with their intervals, were 18 of the ~32 s each checkpoint's
    metrics took on SmolLM2-135M-Instruct."""
    from stoplens.analyses.layerwise import layerwise_delta
    from stoplens.analyses.logit_lens import eos_rank_at
    from stoplens.analyses.lowrank import top1_energy_share
    from stoplens.capture.delta_capture import capture_delta_set
    from stoplens.models import arch

    recs = pair_records(models.data_dir, "test", opts.control_kind, CHECKPOINT_PAIRS)
    memo: dict[int, dict[str, float | None]] = {}
    tok = models.ft.tokenizer

    def compute(step: int, model) -> dict[str, float | None]:
        if step not in memo:
            ds = capture_delta_set(
                model, tok, models.ft.trigger_id, recs, batch_size=opts.batch_size, progress=False
            )
            peak = int(layerwise_delta(ds).summary["last"].peak_layer_rel)
            delta = ds.delta("last")[:, ds.layers.index(peak), 0].double().numpy()
            vocab = min(len(tok), int(arch.get_unembed(model).weight.shape[0]))
            memo[step] = {
                "layerwise_peak": float(peak),
                "top1_energy_share": top1_energy_share(delta),
                "eos_rank": float(eos_rank_at(model, ds, models.ft.eos_id, vocab)),
            }
        return memo[step]

    return {
        k: (lambda step, model, k=k: compute(step, model)[k])
        for k in ("layerwise_peak", "top1_energy_share", "eos_rank")
    }
