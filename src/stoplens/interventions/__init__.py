"""Interventions as reusable artifacts: the $STOP direction (and subspaces) saved with their
provenance, loaded and applied to a model as context managers (see `artifact`)."""

from stoplens.interventions.artifact import (
    DirectionArtifact,
    DirectionEntry,
    apply,
    artifact_from,
    load_directions,
    model_identity,
    save_directions,
)

__all__ = [
    "DirectionArtifact",
    "DirectionEntry",
    "apply",
    "artifact_from",
    "load_directions",
    "model_identity",
    "save_directions",
]
