"""Outputs of `stoplens eval`, made from an `EvalResult` only: ``eval.json`` (atomic), the
stop-score figure ``eval_stop_scores.png`` and the rich summary table. Computes no science."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from stoplens.evaluate.core import KINDS, Condition, EvalResult
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


_Row = tuple[str, str, Condition | None, Condition | None]


def _rows(result: EvalResult) -> list[_Row]:
    """(name, metric, in-template condition, out-of-template condition) in table order:
    the in-template conditions, then conditions only the out-of-template set has."""
    oot = result.out_of_template
    theirs = {c.name: c for c in oot.conditions} if oot is not None else {}
    mine = {c.name for c in result.conditions}
    rows: list[_Row] = [(c.name, c.metric, c, theirs.get(c.name)) for c in result.conditions]
    rows += [
        (c.name, c.metric, None, c) for c in (oot.conditions if oot else ()) if c.name not in mine
    ]
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(rows, key=lambda r: (order.get(r[0].split("/")[0], 9), "/" in r[0]))


def summary_table(result: EvalResult):
    """A rich table: every condition, base vs fine-tuned, with n and 95% CIs, the
    out-of-template set's figures beside the held-out split's; KL and PPL below."""
    from rich.table import Table

    oot = result.out_of_template
    title = "stoplens eval (held-out prompts; greedy first token = EOS)"
    table = Table(title=title + (" — test split | out-of-template set" if oot else ""))
    table.add_column("condition")
    table.add_column("metric")
    table.add_column("n", justify="right")
    table.add_column("base", justify="right")
    table.add_column("fine-tuned", justify="right")
    table.add_column("ft stop score (median)", justify="right")
    if oot is not None:
        table.add_column("OOT n", justify="right")
        table.add_column("OOT fine-tuned", justify="right")
    for name, metric, c, o in _rows(result):
        style = "bold" if "/" not in name else "dim"
        med = c.ft_score.median if c is not None else None
        row = [
            name,
            "stop rate" if metric == "stop_rate" else "false stops",
            str(c.ft.n) if c is not None else "–",
            _fmt(c.base) if c is not None else "–",
            _fmt(c.ft) if c is not None else "–",
            "–" if med is None else f"{med:+.2f}",
        ]
        if oot is not None:
            row += [str(o.ft.n) if o is not None else "–", _fmt(o.ft) if o is not None else "–"]
        table.add_row(*row, style=style)
    kl = result.kl.get("decision_position_clean", {})
    ans = result.kl.get("answer_tokens_clean", {})
    ppl = result.ppl
    if kl.get("mean") is not None:
        table.add_section()
        row = [
            "clean: KL(ft ‖ base)",
            "nats",
            str(kl["n"]),
            "",
            f"{kl['mean']:.4f} (decision) / "
            + ("–" if ans.get("mean") is None else f"{ans['mean']:.4f} (answers)"),
            "",
        ]
        if oot is not None:
            okl = oot.kl.get("decision_position_clean", {})
            row += [
                str(okl.get("n", "–")),
                "–" if okl.get("mean") is None else f"{okl['mean']:.4f} (decision)",
            ]
        table.add_row(*row)
    if ppl.get("ft") is not None:
        table.add_row(
            "clean answers: perplexity",
            "PPL",
            str(ppl["n_tokens"]),
            f"{ppl['base']:.3f}",
            f"{ppl['ft']:.3f}",
            "",
            *([""] * (2 if oot is not None else 0)),
        )
    captions = [_acceptance_line("acceptance", result.acceptance)]
    if oot is not None:
        captions.append(_acceptance_line("out-of-template acceptance", oot.acceptance))
    table.caption = "\n".join(c for c in captions if c)
    return table


def _acceptance_line(label: str, acc: dict) -> str:
    """One caption line: PASS/FAIL and every failed check (or the overall checks if all pass)."""
    checks = acc.get("checks") or {}
    if not checks:
        return ""
    failed = {k: v for k, v in checks.items() if not v["pass"]}
    shown = failed or {k: v for k, v in checks.items() if "_trigger_" not in k}

    def one(k: str, v: dict) -> str:
        op = "≥" if "min" in v else "≤"
        basis = " (95% upper bound)" if v.get("basis") == "ci_high" else ""
        return f"{k} {v['value']:.3f}{basis} {op} {v.get('min', v.get('max'))}"

    return (
        f"{label}: "
        + ("PASS" if acc["pass"] else "FAIL")
        + " — "
        + ", ".join(one(k, v) for k, v in shown.items())
    )


def eval_markdown(ev: dict) -> list[str]:
    """Markdown lines for ANALYSIS_SUMMARY.md from an eval.json dict: the held-out split and
    the out-of-template set side by side (fine-tuned model; rate with its 95% CI and n)."""
    oot = ev.get("out_of_template") or {}
    cols = [("test split", ev)] + ([("out-of-template", oot)] if oot else [])
    names = list(ev.get("conditions", {}))
    names += [n for n in oot.get("conditions", {}) if n not in names]
    order = {k: i for i, k in enumerate(KINDS)}
    names.sort(key=lambda n: (order.get(n.split("/")[0], 9), "/" in n))
    head = "| condition | metric | " + " | ".join(f"{t} (fine-tuned)" for t, _ in cols) + " |"
    out = [head, "|" + " --- |" * (2 + len(cols))]
    for name in names:
        cells = []
        metric = ""
        for _, doc in cols:
            c = doc.get("conditions", {}).get(name)
            if c is None:
                cells.append("–")
                continue
            metric = "stop rate" if c["metric"] == "stop_rate" else "false stops"
            ft = c["ft"]
            lo, hi = ft["ci95"]
            cells.append(
                "–"
                if ft["rate"] is None
                else f"{ft['rate']:.1%} [{lo:.1%}, {hi:.1%}] (n={ft['n']})"
            )
        label = f"**{name}**" if "/" not in name else name
        out.append(f"| {label} | {metric} | " + " | ".join(cells) + " |")
    kls = []
    for t, doc in cols:
        kl = doc.get("kl_ft_base", {}).get("decision_position_clean", {})
        if kl.get("mean") is not None:
            kls.append(f"{t} {kl['mean']:.4f} nats (n={kl['n']})")
    if kls:
        out += [
            "",
            "KL(ft ‖ base) at the decision position on clean prompts: " + "; ".join(kls) + ".",
        ]
    for t, doc in cols:
        acc = doc.get("acceptance") or {}
        if acc.get("checks"):
            out.append(_acceptance_line(f"Acceptance ({t})", acc) + ".")
    return out
