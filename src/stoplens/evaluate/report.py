"""Outputs of `stoplens eval`, made from an `EvalResult` only: ``eval.json`` (atomic), the
stop-score figure ``eval_stop_scores.png`` and the rich summary table. Computes no science."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from stoplens.evaluate.core import KINDS, EvalResult
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


def _fmt(rate) -> str:
    if rate.rate is None:
        return "–"
    return f"{rate.rate:6.1%} [{rate.ci_low:.1%}, {rate.ci_high:.1%}]"


def summary_table(result: EvalResult):
    """A rich table: every condition, base vs fine-tuned, with n and 95% CIs; KL and PPL below."""
    from rich.table import Table

    table = Table(title="stoplens eval (held-out prompts; greedy first token = EOS)")
    table.add_column("condition")
    table.add_column("metric")
    table.add_column("n", justify="right")
    table.add_column("base", justify="right")
    table.add_column("fine-tuned", justify="right")
    table.add_column("ft stop score (median)", justify="right")
    for c in result.conditions:
        style = "bold" if c.group is None else "dim"
        med = c.ft_score.median
        table.add_row(
            c.name,
            "stop rate" if c.metric == "stop_rate" else "false stops",
            str(c.ft.n),
            _fmt(c.base),
            _fmt(c.ft),
            "–" if med is None else f"{med:+.2f}",
            style=style,
        )
    kl = result.kl.get("decision_position_clean", {})
    ans = result.kl.get("answer_tokens_clean", {})
    ppl = result.ppl
    if kl.get("mean") is not None:
        table.add_section()
        table.add_row(
            "clean: KL(ft ‖ base)",
            "nats",
            str(kl["n"]),
            "",
            f"{kl['mean']:.4f} (decision) / "
            + ("–" if ans.get("mean") is None else f"{ans['mean']:.4f} (answers)"),
            "",
        )
    if ppl.get("ft") is not None:
        table.add_row(
            "clean answers: perplexity",
            "PPL",
            str(ppl["n_tokens"]),
            f"{ppl['base']:.3f}",
            f"{ppl['ft']:.3f}",
            "",
        )
    acc = result.acceptance
    if acc.get("checks"):
        table.caption = (
            "acceptance: "
            + ("PASS" if acc["pass"] else "FAIL")
            + " — "
            + ", ".join(
                f"{k} {v['value']:.3f} {'≥' if 'min' in v else '≤'} {v.get('min', v.get('max'))}"
                for k, v in acc["checks"].items()
            )
        )
    return table
