"""The one owner of output paths. Every stage asks a `RunDir` where to read and write; nothing
else builds paths under a run directory.

Layout::

    <root>/data/        datasets (stoplens data)
    <root>/models/      fine-tuned adapters / checkpoints (stoplens train)
    <root>/cache/       captured activations (safetensors) reused across analyses
    <root>/results/     per-stage JSON (eval.json, train.json, analyses)
    <root>/report/      results.json, figures (*.png), ANALYSIS_SUMMARY.md, report.html
    <root>/artifacts/   directions.safetensors (the direction and subspaces, with provenance)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_cache_root() -> Path:
    """Where the embedded default model pair is cached: $STOPLENS_CACHE, else
    $XDG_CACHE_HOME/stoplens, else ~/.cache/stoplens."""
    env = os.environ.get("STOPLENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stoplens"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def directions_file(self) -> Path:
        """The direction artifact (`stoplens.interventions.load_directions` reads it)."""
        return self.artifacts / "directions.safetensors"

    @property
    def generations_file(self) -> Path:
        """Greedy generations under intervention, one JSON object per reply."""
        return self.results / "generations.jsonl"

    def model_dir(self, regime: str) -> Path:
        """Fine-tuned output of one training regime ("behavioral" or "knowledge")."""
        return self.models / regime

    @property
    def results_json(self) -> Path:
        return self.report / "results.json"

    @property
    def summary_md(self) -> Path:
        return self.report / "ANALYSIS_SUMMARY.md"

    @property
    def report_html(self) -> Path:
        return self.report / "report.html"

    def figure(self, name: str) -> Path:
        return self.report / name
