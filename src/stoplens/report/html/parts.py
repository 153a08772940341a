"""Small HTML building blocks for ``report.html``: escaping, number formatting, JSON-pointer
lookup, tables, inline figures, and a generic renderer that turns any results.json value into
readable HTML (so a section whose layout the page does not know — e.g. a new analysis —
still shows all its numbers).

Owns: markup of values. Must not: decide what a section contains (`stoplens.report.html.render`
and the section modules) or compute anything beyond formatting.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MAX_ROWS = 60  # longer lists are cut in generic tables (the full numbers are in results.json)
MAX_ITEMS = 24  # scalars listed inline


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(x: Any, digits: int = 3) -> str:
    """A number as the report writes it (3 significant digits); text as is; None as "n/a"."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}g}"
    return str(x)


def resolve(doc: Any, pointer: str | None) -> Any:
    """The value at a JSON pointer (``/lowrank/trigger/loo_cos``; ``~1`` = ``/``, ``~0`` =
    ``~``), or None when any step is missing."""
    if pointer is None:
        return None
    cur = doc
    for raw in [p for p in pointer.split("/") if p != ""]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return None
    return cur


def is_estimate(x: Any) -> bool:
    """An estimate dict: {"value", "lo", "hi"[, "n"]} (scalar or one value per layer)."""
    return isinstance(x, dict) and {"value", "lo", "hi"} <= set(x)


def estimate_cell(value: Any, lo: Any = None, hi: Any = None, n: Any = None) -> str:
    """A table cell (without <td>) showing value and CI; the hover title repeats them with n."""
    if value is None:
        return "n/a"
    title = f"value {num(value, 6)}"
    out = esc(num(value))
    if lo is not None and hi is not None:
        out += f' <span class="ci">[{esc(num(lo))}, {esc(num(hi))}]</span>'
        title += f"; 95% CI [{num(lo, 6)}, {num(hi, 6)}]"
    if n is not None:
        title += f"; n = {n}"
    return f'<span title="{esc(title)}">{out}</span>'


def sort_value(x: Any) -> str:
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int | float) and not (isinstance(x, float) and math.isnan(x)):
        return repr(float(x))
    if is_estimate(x) and isinstance(x.get("value"), int | float):
        return repr(float(x["value"]))
    return ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sortable: bool = True,
    cls: str = "",
    numeric: Sequence[int] = (),
    attrs: str = "",
) -> str:
    """A table; cells are pre-rendered HTML strings, or (html, sort value) tuples."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            content, sv = c if isinstance(c, tuple) else (c, "")
            klass = ' class="num"' if i in numeric else ""
            dv = f' data-v="{esc(sv)}"' if sv != "" else ""
            cells.append(f"<td{klass}{dv}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="{classes}"{attrs}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def figure(key: str, title: str, png: Path | None, caption: str = "") -> str:
    """An inline figure (base64 PNG) with ``id="fig-<key>"``; a visible note if the file is
    missing (the anchor still exists, so links to it resolve)."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    if png is None or not png.is_file():
        name = png.name if png is not None else key
        return (
            f'<figure id="fig-{esc(key)}" data-title="{esc(title)}">'
            f'<p class="warn problem">figure {esc(name)} is missing from the report folder</p>{cap}</figure>'
        )
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{esc(key)}" data-title="{esc(title)}">'
        f'<img alt="{esc(title)}" src="data:image/png;base64,{data}">{cap}</figure>'
    )


def _compact(x: Any, limit: int = 240) -> str:
    s = json.dumps(x, ensure_ascii=False)
    return esc(s if len(s) <= limit else s[:limit] + " …")


def scalar(x: Any) -> str:
    if isinstance(x, bool):
        return '<span class="pass">✓ yes</span>' if x else '<span class="fail">✗ no</span>'
    if x is None:
        return '<span class="note">n/a</span>'
    if isinstance(x, int | float):
        return f'<span title="{esc(num(x, 8))}">{esc(num(x))}</span>'
    return esc(x)


def generic(x: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: estimates as value [CI], lists of scalars inline, lists of
    dicts as tables, dicts as key/value tables; deep or long values are cut (with a note)."""
    if not isinstance(x, dict | list):
        return scalar(x)
    if isinstance(x, dict) and is_estimate(x):
        v, lo, hi, n = x.get("value"), x.get("lo"), x.get("hi"), x.get("n")
        if isinstance(v, list):
            rows = [
                [str(i), (estimate_cell(v[i], _at(lo, i), _at(hi, i), n), sort_value(v[i]))]
                for i in range(len(v))
            ]
            return table(["index", "value [95% CI]"], rows[:MAX_ROWS], numeric=(1,))
        return estimate_cell(v, lo, hi, n)
    if depth >= 4:
        return f"<code>{_compact(x)}</code>"
    if isinstance(x, list):
        if not x:
            return '<span class="note">(empty)</span>'
        if all(not isinstance(v, dict | list) for v in x):
            shown = ", ".join(scalar(v) for v in x[:MAX_ITEMS])
            more = (
                f' <span class="note">… {len(x) - MAX_ITEMS} more</span>'
                if len(x) > MAX_ITEMS
                else ""
            )
            return shown + more
        if all(isinstance(v, dict) for v in x):
            keys: list[str] = []
            for v in x[:MAX_ROWS]:
                keys += [k for k in v if k not in keys]
            rows = [
                [(generic(v.get(k), depth + 1), sort_value(v.get(k))) for k in keys]
                for v in x[:MAX_ROWS]
            ]
            more = (
                f'<p class="note">first {MAX_ROWS} of {len(x)} rows shown; all are in results.json</p>'
                if len(x) > MAX_ROWS
                else ""
            )
            return table(keys, rows) + more
        return "<ol>" + "".join(f"<li>{generic(v, depth + 1)}</li>" for v in x[:MAX_ROWS]) + "</ol>"
    rows = [[f"<code>{esc(k)}</code>", generic(v, depth + 1)] for k, v in x.items()]
    return table(["key", "value"], rows, sortable=False, cls="kv")


def _at(x: Any, i: int) -> Any:
    return x[i] if isinstance(x, list) and i < len(x) else None


def json_block(x: Any, limit: int = 20_000) -> str:
    s = json.dumps(x, indent=1, ensure_ascii=False)
    if len(s) > limit:
        s = s[:limit] + f"\n… ({len(s) - limit} more characters in results.json)"
    return f"<pre>{esc(s)}</pre>"


def item(x: Any, i: int) -> Any:
    return x[i] if isinstance(x, list) and i < len(x) else None


def more(x: Any, what: str = "all numbers of this section") -> str:
    return f"<details><summary>{esc(what)}</summary>{generic(x)}</details>"
