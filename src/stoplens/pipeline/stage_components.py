"""Stage components: heads and MLPs, subspaces, generations under intervention and the
weight view, on the causal suite's selected direction.

Owns: `run_component_stage`, which writes the direction artifact and the generations into
the run directory. Must not: compute a number itself (that is
`stoplens.analyses.component_suite`), or import a later stage.
"""

from __future__ import annotations

from typing import Any

from stoplens.pipeline.config import AnalyzeOptions
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.stage_causal import encode_split, null_pairs
from stoplens.pipeline.stage_models import Models
from stoplens.rundir import RunDir


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
    from stoplens.capture.encode import encode_pairs
    from stoplens.interventions import save_directions
    from stoplens.io import atomic_write_jsonl

    ft = models.ft
    pad = ft.tokenizer.pad_token_id if ft.tokenizer.pad_token_id is not None else ft.eos_id
    train, _ = encode_split(models, ft, "train", opts)
    test, test_recs = encode_split(models, ft, "test", opts)
    ctrl2 = encode_pairs(ft.tokenizer, test_recs, ft.trigger_id, control_field="control2")
    kw: dict[str, Any] = dict(seed=opts.seed, batch_size=opts.batch_size)
    cfg = ComponentSuiteConfig(patching=ComponentConfig(**kw), subspace=SubspaceConfig(**kw))
    _log(f"components: heads, MLPs and subspaces on {len(test)} test pairs", opts.progress)
    suite = run_component_suite(
        ft.model, train, test, selection=causal.selection, eos_id=ft.eos_id, pad_id=pad,
        null_pairs=null_pairs(test, ctrl2),
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
