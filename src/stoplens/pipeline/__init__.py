"""The `stoplens run` / `analyze` / `causal` orchestration, one module per stage.

Stages, in order (a module imports only from those above it)::

    config            ModelSpec, AnalyzeOptions, RunConfig, the stage line
    resolve           resolve_spec, check_data_trigger (fail fast, before anything is written)
    stage_finetune    `run --model BASE`: data + fine-tuning in each regime
    stage_models      Models, load_models (embedded pair or user models, checkpoint loaders)
    stage_eval        run_eval (behaviour: base vs fine-tuned)
    stage_analyses    pair_records, run_analyses (the four analyses, specificity, pair table)
    stage_causal      run_causal_suite (patching, directions, steering, knowledge, checkpoints)
    stage_components  run_component_stage (heads, MLPs, subspaces, generations, weights)
    orchestrator      run_pipeline, analyze_only, run_meta (then `report.summary.write_report`)

Owns: wiring stages together and deciding where files go (through `RunDir`). Must not:
compute a number (every number comes from `stoplens.analyses`, `stoplens.evaluate` or
`stoplens.train`). This module only re-exports the public names.
"""

from stoplens.pipeline.config import (
    ANALYSES,
    CONTROL_KINDS,
    INFERENCE,
    AnalyzeOptions,
    ModelSpec,
    RunConfig,
)
from stoplens.pipeline.orchestrator import analyze_only, run_meta, run_pipeline
from stoplens.pipeline.resolve import check_data_trigger, resolve_spec
from stoplens.pipeline.stage_analyses import pair_records, run_analyses
from stoplens.pipeline.stage_causal import run_causal_suite
from stoplens.pipeline.stage_components import run_component_stage
from stoplens.pipeline.stage_eval import run_eval
from stoplens.pipeline.stage_finetune import prepare_user_models
from stoplens.pipeline.stage_models import Models, load_base_with_trigger, load_models

__all__ = [
    "ANALYSES",
    "CONTROL_KINDS",
    "INFERENCE",
    "AnalyzeOptions",
    "ModelSpec",
    "Models",
    "RunConfig",
    "analyze_only",
    "check_data_trigger",
    "load_base_with_trigger",
    "load_models",
    "pair_records",
    "prepare_user_models",
    "resolve_spec",
    "run_analyses",
    "run_causal_suite",
    "run_component_stage",
    "run_eval",
    "run_meta",
    "run_pipeline",
]
