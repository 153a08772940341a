"""Stage analyses: the four correlational analyses (layerwise, low rank, logit lens, diff
lens), trigger specificity and the per-pair table, on the test-split contrast pairs.

Owns: `pair_records` (the contrast pairs of one split and control kind), `run_analyses`.
Must not: compute a number itself (every number comes from `stoplens.analyses`), write
anything but the activation cache it hands to `capture_delta_set`, or import a later stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoplens.errors import StoplensError
from stoplens.pipeline.config import AnalyzeOptions
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.stage_models import Models
from stoplens.rundir import RunDir


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


def run_analyses(models: Models, run: RunDir, opts: AnalyzeOptions) -> dict[str, Any]:
    """The four analyses on the test-split contrast pairs (activations cached in the run
    directory, so `--only` reuses them)."""
    from stoplens.analyses.diff_lens import diff_lens
    from stoplens.analyses.layerwise import layerwise_delta
    from stoplens.analyses.logit_lens import logit_lens_delta
    from stoplens.analyses.lowrank import lowrank
    from stoplens.capture.delta_capture import capture_delta_set

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
    out["specificity"] = _specificity(models, ds, opts)
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
    out["pair_table"] = _pair_table(models, ds, opts)
    return out


def _specificity(models: Models, ds, opts: AnalyzeOptions):
    """Trigger specificity on the captured pairs (the fixed token of the delta set as one of
    its controls)."""
    from stoplens.analyses.specificity import trigger_specificity

    tok = models.ft.tokenizer
    return trigger_specificity(
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


def _pair_table(models: Models, ds, opts: AnalyzeOptions):
    """The report's per-pair drill-down."""
    from stoplens.analyses.pair_table import pair_table  # the report's per-pair drill-down

    return pair_table(
        models.ft.model, ds, models.ft.tokenizer, eos_id=models.ft.eos_id,
        batch_size=opts.batch_size, progress=opts.progress,
    )  # fmt: skip
