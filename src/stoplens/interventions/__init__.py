"""Interventions on a model's activations and what the model does under them.

* `primitives`: `Ablation`, `SubspaceAblation`, `Addition` (frozen values that make hooks),
  `random_directions`, `intervention_key`;
* `readout`: `Readout` and logits / stop outcomes / token NLL / greedy tokens under an
  intervention (one forward path: `stoplens.capture.extract`);
* `cache`: `OutcomeCache`, the speed-up (never the same forward twice within a run);
* `artifact`: the $STOP direction (and subspaces) saved with their provenance, loaded and
  applied to a model as context managers.

Must not: import from `stoplens.analyses` (the science built on these) or `stoplens.report`.
"""

from stoplens.interventions.artifact import (
    DirectionArtifact,
    DirectionEntry,
    apply,
    artifact_from,
    load_directions,
    model_identity,
    save_directions,
)
from stoplens.interventions.primitives import (
    Ablation,
    Addition,
    Intervention,
    SubspaceAblation,
    intervention_key,
    random_directions,
)

__all__ = [
    "Ablation",
    "Addition",
    "DirectionArtifact",
    "DirectionEntry",
    "Intervention",
    "SubspaceAblation",
    "apply",
    "artifact_from",
    "intervention_key",
    "load_directions",
    "model_identity",
    "random_directions",
    "save_directions",
]
