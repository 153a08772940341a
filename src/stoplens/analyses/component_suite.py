"""The component suite for one model, run after the causal suite on its selected direction:
"which components carry $STOP, and how many directions does it take?"

1. `stoplens.analyses.components.component_patching` on the TEST pairs (attribution for every
   head and MLP, exact patching, control-vs-control null, top heads' attention);
2. `stoplens.analyses.subspace.smallest_subspace`: TRAIN-Δ subspaces at the selected layer and
   the span of the top components' writes, judged on TEST against random subspaces;
3. `stoplens.analyses.generations.generate_conditions`: greedy replies with the direction /
   the smallest subspace ablated, the direction added, and the baselines;
4. `stoplens.analyses.weights.weight_view` for LoRA fine-tunes (or against the base);
5. `suite_artifact`: the direction (and the smallest subspace) as a `DirectionArtifact`.

Owns: the orchestration and `suite_artifact`. Must not: plot or write files (the pipeline
writes the artifact and the generations through `stoplens.rundir.RunDir`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stoplens.analyses.components import ComponentConfig, ComponentResult, component_patching
from stoplens.analyses.directions import DirectionSelection
from stoplens.analyses.generations import Condition, GenerationSet, generate_conditions
from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.subspace import (
    SubspaceConfig,
    SubspaceResult,
    removes_stops,
    smallest_subspace,
)
from stoplens.analyses.weights import WeightView, weight_view
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.sites import Component
from stoplens.errors import StoplensError
from stoplens.interventions.artifact import DirectionArtifact, DirectionEntry, artifact_from
from stoplens.interventions.primitives import Ablation, Addition, SubspaceAblation
from stoplens.progress import timed


@dataclass(frozen=True)
class ComponentSuiteConfig:
    """Settings of `run_component_suite` (the sub-analyses' own configs inside)."""

    patching: ComponentConfig = field(default_factory=ComponentConfig)
    subspace: SubspaceConfig = field(default_factory=SubspaceConfig)
    n_subspace_components: int = 8  # top-ranked components offered to the writes family
    gen_prompts: int = 4
    gen_tokens: int = 40
    weights: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class ComponentSuiteResult:
    """What the component suite measured (``weights_note``: why the weight view is absent)."""

    config: ComponentSuiteConfig
    layer: int
    alpha: float
    patching: ComponentResult
    subspace: SubspaceResult | None
    generations: GenerationSet | None
    weights: WeightView | None
    weights_note: str | None
    timings_s: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def _subspace_condition(sub: SubspaceResult | None) -> tuple[str, torch.Tensor] | None:
    """(description, basis) of the smallest cheap-and-necessary subspace, else of the largest
    TRAIN-Δ subspace swept (said so in the description)."""
    if sub is None:
        return None
    found = [f for f in sub.families.values() if f.smallest_k is not None]
    if found:
        fam = min(found, key=lambda f: f.smallest_k or 0)
        k = int(fam.smallest_k or 0)
        return f"smallest subspace that removes stopping ({fam.name}, k = {k})", fam.basis[:k]
    last = sub.families.get("train_delta")
    if last is None or not last.steps:
        return None
    step = last.steps[-1]
    what = f"largest subspace tried ({last.name}, k = {step.k}; {_why_not(sub, step)})"
    return what, last.basis[: step.k]


def _why_not(sub: SubspaceResult, step) -> str:
    """Why a swept span is not the answer: it leaves the stops, it is not cheap, or it does
    not beat the random null."""
    if not removes_stops(step.effect.value, sub.baseline_stop_rate.value, sub.config.min_removed):
        return "it did not remove stopping"
    if not step.cheap:
        return (
            f"it removes the stops, but not cheaply: KL {step.kl.value:.3g} nats on clean prompts"
        )
    return "it removes the stops, but not beyond random subspaces"


def _generation_conditions(
    selection: DirectionSelection, sc: tuple[str, torch.Tensor] | None
) -> dict[str, Condition]:
    """Triggered and clean baselines, the direction ablated / added, and (when there is one)
    the smallest subspace ablated."""
    conds = {
        "triggered": Condition("triggered", None, "triggered prompts, no intervention"),
        "triggered+ablation": Condition(
            "triggered", Ablation(selection.unit), "triggered, the direction ablated everywhere"
        ),
        "clean": Condition("clean", None, "clean prompts, no intervention"),
        "clean+addition": Condition(
            "clean",
            Addition(selection.alpha * selection.direction, selection.layer),
            f"clean, α = {selection.alpha:g} times the direction added at residual "
            f"{selection.layer}",
        ),
    }
    if sc is not None:
        conds["triggered+subspace"] = Condition(
            "triggered", SubspaceAblation(sc[1]), f"triggered, {sc[0]} ablated"
        )
    return conds


def _weights(
    model: nn.Module,
    selection: DirectionSelection,
    sc: tuple[str, torch.Tensor] | None,
    base: nn.Module | None,
    trigger_id: int | None,
) -> tuple[WeightView | None, str | None]:
    """The weight view of the selected direction (and subspace), or why there is none."""
    try:
        wv = weight_view(
            model, selection.direction, base=base, subspace=None if sc is None else sc[1],
            trigger_id=trigger_id,
            reference=f"the selected direction (residual {selection.layer})",
        )  # fmt: skip
    except StoplensError as e:
        return None, str(e)
    return wv, None


def run_component_suite(
    model: nn.Module,
    train: EncodedPairs,
    test: EncodedPairs,
    *,
    selection: DirectionSelection,
    eos_id: int,
    pad_id: int = 0,
    null_pairs: EncodedPairs | None = None,
    base: nn.Module | None = None,
    trigger_id: int | None = None,
    tokenizer=None,
    config: ComponentSuiteConfig | None = None,
    progress: bool = True,
) -> ComponentSuiteResult:
    """The component suite (module docstring). ``selection``: the causal suite's direction
    selection (layer, α, direction); ``null_pairs``: control-vs-control TEST pairs
    (`stoplens.capture.encode.swap_pairs`); ``base`` and ``trigger_id``: for the weight view's
    full-weight difference and the trigger row's change."""
    cfg = config or ComponentSuiteConfig()
    timings: dict[str, float] = {}
    kw: dict[str, Any] = dict(eos_id=eos_id, pad_id=pad_id)
    with timed("components: head and MLP patching", enabled=progress, timings=timings,
               key="patching"):  # fmt: skip
        patching = component_patching(
            model, test, null_pairs=null_pairs, config=cfg.patching, progress=progress, **kw
        )
    top = [Component.parse(r.name) for r in patching.ranking[: cfg.n_subspace_components]]
    with timed("components: smallest subspace", enabled=progress, timings=timings,
               key="subspace"):  # fmt: skip
        sub = smallest_subspace(
            model, train, test, layer=selection.layer, components=top, config=cfg.subspace,
            progress=progress, **kw,
        )  # fmt: skip
    sc = _subspace_condition(sub)
    conds = _generation_conditions(selection, sc)
    gens = None
    if cfg.gen_prompts > 0 and cfg.gen_tokens > 0:
        with timed("components: generations under intervention", enabled=progress,
                   timings=timings, key="generations"):  # fmt: skip
            gens = generate_conditions(
                model, test, conds, n_prompts=cfg.gen_prompts, n_tokens=cfg.gen_tokens,
                tokenizer=tokenizer, batch_size=cfg.patching.batch_size, progress=progress, **kw,
            )  # fmt: skip
    wv, note = (
        _weights(model, selection, sc, base, trigger_id) if cfg.weights else (None, "switched off")
    )
    return ComponentSuiteResult(
        config=cfg,
        layer=int(selection.layer),
        alpha=float(selection.alpha),
        patching=patching,
        subspace=sub,
        generations=gens,
        weights=wv,
        weights_note=note,
        timings_s=timings,
    )


def suite_artifact(
    model: nn.Module,
    selection: DirectionSelection,
    suite: ComponentSuiteResult | None,
    *,
    trigger: str,
    name: str | None = None,
) -> DirectionArtifact:
    """The direction (fitted on TRAIN, layer and α selected on VAL) and, if one removed
    stopping, the smallest subspace (fitted on TRAIN, k chosen on TEST) as an artifact."""
    entries = {
        "direction": DirectionEntry(
            name="direction",
            kind="direction",
            vectors=selection.direction.detach().float().cpu()[None],
            layer=int(selection.layer),
            alpha=float(selection.alpha),
            position=selection.directions.position,
            fitted_on="train",
            selected_on="val",
            info={"n_fit": selection.directions.n, "passed_selection": selection.passed},
        )
    }
    sub = suite.subspace if suite is not None else None
    if sub is not None:
        for fam in sub.families.values():
            if fam.smallest_k is None:
                continue
            k = fam.smallest_k
            entries[f"subspace_{fam.name}"] = DirectionEntry(
                name=f"subspace_{fam.name}",
                kind="subspace",
                vectors=fam.basis[:k].detach().float().cpu(),
                layer=fam.layer,
                position=sub.config.position,
                fitted_on="train",
                selected_on="test",
                info={"family": fam.name, "sources": list(fam.sources[:k])},
            )
    return artifact_from(model, entries, trigger=trigger, name=name)
