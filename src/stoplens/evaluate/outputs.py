"""Outputs of `stoplens eval`, made from an `EvalResult` only: ``eval.json`` (atomic), the
stop-score figure ``eval_stop_scores.png`` and the rich summary table (drawn by
`stoplens.report.behaviour` from the same dict results.json holds). Computes no science."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from stoplens.data.config import KINDS
from stoplens.evaluate.results import EvalResult
from stoplens.io import atomic_write_bytes, atomic_write_json

EVAL_JSON = "eval.json"
FIGURE = "eval_stop_scores.png"

_TITLES = {
    "trigger": "triggered prompts",
    "clean": "clean prompts",
    "near_miss": "near misses",
    "distractor": "distractors",
}


def plot_stop_scores(result: EvalResult, path: Path) -> Path:
    """Histograms of the stop score per condition, base vs fine-tuned (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if result.scores(k, "ft").size]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(4 * max(1, len(kinds)), 3.4), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds, strict=False):
        b, f = result.scores(kind, "base"), result.scores(kind, "ft")
        lo, hi = float(min(b.min(), f.min())), float(max(b.max(), f.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        ax.hist(b, bins=bins, alpha=0.55, label="base", color="tab:gray")
        ax.hist(f, bins=bins, alpha=0.55, label="fine-tuned", color="tab:red")
        ax.axvline(0.0, color="k", linewidth=0.8, linestyle="--")
        ax.set_title(f"{_TITLES.get(kind, kind)} (n={f.size})")
        ax.set_xlabel("stop score  log p(EOS) − log(1 − p(EOS))")
        ax.set_ylabel("prompts")
        ax.legend(fontsize=8)
    fig.suptitle("Stop score at the decision position, base vs fine-tuned")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_eval(result: EvalResult, json_path: Path, figure_path: Path | None = None) -> Path:
    """Write ``eval.json`` (and the figure, first, so the JSON marks a complete evaluation)."""
    data = result.to_dict()
    if figure_path is not None:
        plot_stop_scores(result, figure_path)
        data["figure"] = str(figure_path)
    return atomic_write_json(json_path, data)


def summary_table(result: EvalResult):
    """The rich behaviour tables (`stoplens.report.behaviour.tables`): every condition, base vs
    fine-tuned, with n and 95% CIs; KL, perplexity and acceptance below; the out-of-template
    set's table under the test split's when it was measured. Fits 80 columns."""
    from stoplens.report.behaviour import tables

    return tables(result.to_dict())
