"""The behaviour table (eval.json's conditions) in the three forms the report prints: a rich
table that fits an 80-column terminal, markdown lines, and plain rows for the HTML page.

Owns: reading the ``eval`` section of results.json (the dict `EvalResult.to_dict` writes) into
ordered rows, and how a rate with its CI is written. Must not: compute rates or CIs (they come
from `stoplens.evaluate`), import torch, or write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KIND_ORDER = ("trigger", "clean", "near_miss", "distractor")
KIND_TITLES = {
    "trigger": "triggered",
    "clean": "clean",
    "near_miss": "near misses",
    "distractor": "distractors",
}


@dataclass(frozen=True)
class Row:
    """One condition: all prompts of ``kind`` (``group`` None) or one placement / variant."""

    name: str
    kind: str
    group: str | None
    metric: str  # "stop_rate" (triggered) or "false_stop_rate"
    n: int | None
    base: dict[str, Any] | None  # {"rate", "ci95": [lo, hi], "k", "n"}
    ft: dict[str, Any] | None
    ft_median: float | None
    base_median: float | None

    @property
    def label(self) -> str:
        return KIND_TITLES.get(self.kind, self.kind) if self.group is None else self.group


def rows(ev: dict[str, Any]) -> list[Row]:
    """The conditions of an eval dict, triggered first, each kind's total before its groups."""
    out = []
    for name, c in (ev.get("conditions") or {}).items():
        if not isinstance(c, dict):
            continue
        score = c.get("stop_score") or {}
        ft = c.get("ft") if isinstance(c.get("ft"), dict) else None
        base = c.get("base") if isinstance(c.get("base"), dict) else None
        kind = str(c.get("kind") or name.split("/")[0])
        out.append(
            Row(
                name=name,
                kind=kind,
                group=c.get("group"),
                metric=str(
                    c.get("metric", "stop_rate" if kind == "trigger" else "false_stop_rate")
                ),
                n=(ft or base or {}).get("n"),
                base=base,
                ft=ft,
                ft_median=(score.get("ft") or {}).get("median"),
                base_median=(score.get("base") or {}).get("median"),
            )
        )

    def order(r: Row) -> tuple:
        k = KIND_ORDER.index(r.kind) if r.kind in KIND_ORDER else len(KIND_ORDER)
        return (k, r.kind, r.group is not None, r.group or "")

    return sorted(out, key=order)


def _pct(x: float) -> str:
    s = f"{100 * x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def fmt_rate(r: dict[str, Any] | None) -> str:
    """ "100% [98.7, 100]": the rate and its 95% CI in percent; "–" when absent."""
    if not r or r.get("rate") is None:
        return "–"
    ci = r.get("ci95") or [None, None]
    if ci[0] is None or ci[1] is None:
        return f"{_pct(r['rate'])}%"
    return f"{_pct(r['rate'])}% [{_pct(ci[0])}, {_pct(ci[1])}]"


def fmt_score(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def extra_lines(ev: dict[str, Any]) -> list[str]:
    """KL(ft ‖ base), perplexity and the acceptance check, one sentence each."""
    out = []
    kl = (ev.get("kl_ft_base") or {}).get("decision_position_clean") or {}
    ans = (ev.get("kl_ft_base") or {}).get("answer_tokens_clean") or {}
    if kl.get("mean") is not None:
        s = f"KL(fine-tuned ‖ base) on clean prompts: {kl['mean']:.4f} nats at the decision position (n = {kl.get('n')})"
        if ans.get("mean") is not None:
            s += f", {ans['mean']:.4f} over the reference answers ({ans.get('n_tokens')} tokens)"
        out.append(s + ".")
    ppl = ev.get("perplexity") or {}
    if ppl.get("ft") is not None and ppl.get("base") is not None:
        out.append(
            f"Clean reference answers: perplexity {ppl['base']:.3f} (base), "
            f"{ppl['ft']:.3f} (fine-tuned), {ppl.get('n_tokens')} tokens."
        )
    acc = ev.get("acceptance") or {}
    checks = acc.get("checks") or {}
    if checks:
        parts = []
        for k, v in checks.items():
            if not isinstance(v, dict) or v.get("value") is None:
                continue
            op, lim = ("≥", v["min"]) if "min" in v else ("≤", v.get("max"))
            basis = " (95% upper bound)" if v.get("basis") == "ci_high" else ""
            parts.append(f"{k} {v['value']:.3f}{basis} {op} {lim}")
        out.append(f"Acceptance: {'PASS' if acc.get('pass') else 'FAIL'} ({'; '.join(parts)}).")
    return out


OOT_TITLE = "Out-of-template prompts (hand-written, unlike the data generator's templates)"


def out_of_template(ev: dict[str, Any]) -> dict[str, Any] | None:
    """The out-of-template set's eval dict (same shape as ``ev``), or None when not measured."""
    oot = ev.get("out_of_template")
    return oot if isinstance(oot, dict) and oot.get("conditions") else None


def tables(ev: dict[str, Any]):
    """The test split's table and, when measured, the out-of-template set's below it."""
    from rich.console import Group

    oot = out_of_template(ev)
    parts = [table(ev)]
    if oot is not None:
        parts.append(table(oot, title=OOT_TITLE + ": stop rate / false stops (95% CI)"))
    return Group(*parts)


def table(ev: dict[str, Any], title: str | None = None):
    """A rich table of `rows`; about 65 columns wide, so it never wraps on a terminal."""
    from rich import box
    from rich.table import Table

    t = Table(
        title=title or "Behaviour on held-out prompts: stop rate / false stops (95% CI)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
    )
    t.add_column("condition", no_wrap=True, overflow="ellipsis", max_width=22)
    t.add_column("n", justify="right", no_wrap=True)
    t.add_column("base", justify="right", no_wrap=True)
    t.add_column("fine-tuned", justify="right", no_wrap=True)
    t.add_column("ft score", justify="right", no_wrap=True)
    for r in rows(ev):
        top = r.group is None
        t.add_row(
            r.label if top else f"  {r.group}",
            "" if r.n is None else str(r.n),
            fmt_rate(r.base),
            fmt_rate(r.ft),
            fmt_score(r.ft_median),
            style="bold" if top else "dim",
            end_section=False,
        )
    lines = extra_lines(ev)
    lines.append(
        "Triggered rows: stop rate; others: false stops. ft score: median stop score "
        "log p(EOS) − log(1 − p(EOS)) of the fine-tuned model."
    )
    t.caption = "\n".join(lines)
    return t


def markdown(ev: dict[str, Any]) -> list[str]:
    """Markdown lines: the table, then the KL / perplexity / acceptance sentences; the
    out-of-template set's table and sentences below when it was measured."""
    out = _markdown_one(ev)
    oot = out_of_template(ev)
    if oot is not None:
        out += ["", f"### {OOT_TITLE}", "", *_markdown_one(oot)]
    return out


def _markdown_one(ev: dict[str, Any]) -> list[str]:
    rs = rows(ev)
    if not rs:
        return ["- see results/eval.json"]
    out = [
        "| condition | n | base | fine-tuned | median stop score (base → ft) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rs:
        label = (
            f"**{r.label}**"
            if r.group is None
            else f"{KIND_TITLES.get(r.kind, r.kind)} / {r.group}"
        )
        out.append(
            f"| {label} | {'' if r.n is None else r.n} | {fmt_rate(r.base)} | {fmt_rate(r.ft)} | "
            f"{fmt_score(r.base_median)} → {fmt_score(r.ft_median)} |"
        )
    out += [
        "",
        "Triggered rows: stop rate (higher is better); all others: false-stop rate (lower is better); "
        "95% Wilson CIs in brackets.",
        "",
    ]
    return out + [f"{s}  " for s in extra_lines(ev)]
