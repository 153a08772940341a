"""The drill-down part of ``report.html``: the table of TEST contrast pairs (from the
``pair_table`` section of results.json, see `stoplens.analyses.pair_table`) and the example
generations (``causal.effects.examples`` and any generations a components section carries).

Owns: how one pair is shown — its prompt as tokens, the trigger position highlighted (its
control token one toggle away), the decision positions underlined, the stop scores of both
prompts, the per-pair Δ statistics at a chosen layer and a per-layer sparkline. Must not:
compute statistics.
"""

from __future__ import annotations

import json
from typing import Any

from stoplens.report.html.parts import MAX_ROWS, esc, generic, num, table


def _tok(text: str) -> str:
    return text.replace("\n", "↵").replace("\t", "⇥") or "∅"


def _tokens(row: dict[str, Any]) -> str:
    toks = row.get("tokens") or []
    tp = row.get("trigger_pos")
    dec = set(row.get("decision_positions") or [])
    last = len(toks) - 1
    out = []
    for i, t in enumerate(toks):
        cls = ["tok"]
        title = f"position {i}"
        extra = ""
        if i == tp:
            cls.append("trig")
            ctrl = _tok(str(row.get("control_token", "?")))
            title += f": trigger (control prompt: {ctrl!r})"
            extra = f' data-trig="{esc(_tok(t))}" data-ctrl="{esc(ctrl)}"'
        if i in dec:
            cls.append("dec")
            title += ": decision position" + (
                " (predicts the first reply token)" if i == last else ""
            )
        out.append(
            f'<span class="{" ".join(cls)}" title="{esc(title)}"{extra}>{esc(_tok(t))}</span>'
        )
    return '<div class="toks">' + "".join(out) + "</div>"


def _spark(rel: list[Any], layers: list[int]) -> str:
    vals = [v for v in rel if isinstance(v, int | float)]
    top = max(vals) if vals else 0.0
    if not rel or top <= 0:
        return ""
    w, h = 4 * len(rel), 18
    bars = []
    for i, v in enumerate(rel):
        if not isinstance(v, int | float):
            continue
        bh = max(1.0, h * v / top)
        lab = layers[i] if i < len(layers) else i
        bars.append(
            f'<rect x="{4 * i}" y="{h - bh:.1f}" width="3" height="{bh:.1f}">'
            f"<title>layer {lab}: ‖Δ‖/‖h‖ = {num(v)}</title></rect>"
        )
    return (
        f'<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}">{"".join(bars)}</svg>'
    )


def _options(values: list[str], label: str, ident: str) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return f'<label>{esc(label)} <select id="{ident}"><option value="">all</option>{opts}</select></label>'


def pair_section(pt: dict[str, Any], judged_layer: int | None) -> str:
    """The filterable, sortable table of TEST pairs."""
    rows = [r for r in pt.get("rows") or [] if isinstance(r, dict)]
    layers = [int(x) for x in pt.get("layers") or []]
    if not rows:
        return '<p class="note">No pair rows in results.json.</p>'
    j = layers.index(judged_layer) if judged_layer in layers else len(layers) - 1
    places = sorted({str(r.get("placement")) for r in rows})
    kinds = sorted({str(r.get("control_kind")) for r in rows})
    layer_opts = "".join(
        f'<option value="{i}"{" selected" if i == j else ""}>{L}</option>'
        for i, L in enumerate(layers)
    )
    filters = (
        '<div class="filters">'
        + _options(places, "placement", "f-placement")
        + _options(kinds, "control kind", "f-kind")
        + '<label>search <input id="f-text" type="search" placeholder="pair id or text"></label>'
        + f'<label>Δ statistics at layer <select id="f-layer">{layer_opts}</select></label>'
        + '<label><input id="f-control" type="checkbox"> show the control prompts</label>'
        + '<span id="f-count" class="note"></span></div>'
    )
    body = [_pair_row(r, j, layers) for r in rows]
    head = [
        "pair",
        "placement",
        "control kind",
        "control",
        "stop score (triggered)",
        "stop score (control)",
        "‖Δ‖/‖h‖",
        "cos(Δ, mean Δ)",
        "‖Δ‖/‖h‖ by layer",
        "prompt tokens",
    ]
    ths = "".join(
        f'<th class="num">{esc(h)}</th>' if 4 <= i <= 7 else f"<th>{esc(h)}</th>"
        for i, h in enumerate(head)
    )
    legend = (
        '<p class="note">Fine-tuned model. Stop score = log p(EOS) − log(1 − p(EOS)) at the last '
        "prompt position; ■ = greedy decoding stops at once, □ = it does not. Δ = h(triggered) − "
        "h(control) at the last prompt position; ‖Δ‖/‖h‖ uses the control's residual norm; cos(Δ, "
        "mean Δ) is to the mean Δ of the other pairs (leave-one-out). In the prompt, the "
        '<span class="tok trig">trigger</span> is highlighted (tick the box to see each control token '
        'in its place) and the <span class="tok dec">decision positions</span> are underlined; '
        "↵ is a newline. Hover a token for its position.</p>"
    )
    return (
        legend
        + filters
        + f'<div class="wide"><table id="pair-table" class="sortable"><thead><tr>{ths}</tr></thead>'
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _pair_row(r: dict[str, Any], j: int, layers: list[int]) -> str:
    """One pair's table row; ``j``: the index of the layer its Δ statistics are shown at."""
    rel = list(r.get("rel_delta") or [])
    cos = list(r.get("cos_to_mean") or [])
    rj = rel[j] if j < len(rel) else None
    cj = cos[j] if j < len(cos) else None
    st, sc = r.get("stop_score_trig"), r.get("stop_score_ctrl")
    mark_t = "" if r.get("stops_trig") is None else (" ■" if r.get("stops_trig") else " □")
    mark_c = "" if r.get("stops_ctrl") is None else (" ■" if r.get("stops_ctrl") else " □")
    return (
        f'<tr data-placement="{esc(r.get("placement"))}" data-kind="{esc(r.get("control_kind"))}" '
        f"data-rel='{esc(json.dumps(rel))}' data-cos='{esc(json.dumps(cos))}'>"
        f"<td><code>{esc(r.get('pair_id'))}</code></td>"
        f"<td>{esc(r.get('placement'))}</td><td>{esc(r.get('control_kind'))}</td>"
        f"<td>{esc(r.get('control'))}</td>"
        f'<td class="num" data-v="{esc(st if st is not None else "")}">{esc(num(st))}{mark_t}</td>'
        f'<td class="num" data-v="{esc(sc if sc is not None else "")}">{esc(num(sc))}{mark_c}</td>'
        f'<td class="num rel" data-v="{esc(rj if rj is not None else "")}">{esc(num(rj))}</td>'
        f'<td class="num cos" data-v="{esc(cj if cj is not None else "")}">{esc(num(cj))}</td>'
        f"<td>{_spark(rel, layers)}</td><td>{_tokens(r)}</td></tr>"
    )


def examples_section(examples: list[Any], title: str = "") -> str:
    """Generated continuations (condition, pair, placement, stopped, text) as a sortable table."""
    rows = [e for e in examples if isinstance(e, dict)]
    if not rows:
        return ""
    if not all("text" in e for e in rows):
        return generic(rows)
    body = [
        [
            esc(e.get("condition", "")),
            f"<code>{esc(e.get('pair_id', ''))}</code>",
            esc(e.get("placement", "")),
            ("■ stops" if e.get("stopped") else "□ continues", "1" if e.get("stopped") else "0"),
            f'<span class="gen">{esc(_tok(str(e.get("text", ""))))}</span>',
        ]
        for e in rows[:MAX_ROWS]
    ]
    head = f"<h3>{esc(title)}</h3>" if title else ""
    return head + table(["condition", "pair", "placement", "first token", "generation"], body)
