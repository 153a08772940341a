"""The headline and the checklist of ``report.html``: one line per check (status, tier,
claim, measured value with its CI, n, null, threshold, links to its figure and numbers), the
figure viewer beside it, and the numbers behind each line.

Owns: how a check is shown. Must not: judge (the verdicts are in the document).
"""

from __future__ import annotations

from typing import Any

from stoplens.report.html.layout import FALLBACK_LINKS
from stoplens.report.html.page import Page
from stoplens.report.html.parts import esc, estimate_cell, generic, num, resolve


def _links(check: dict[str, Any], figures: dict[str, str]) -> tuple[str | None, str | None]:
    """(figure key, JSON pointer) of a check: its own keys, else the fallback table."""
    fig, ref = check.get("figure"), check.get("ref")
    if "figure" not in check or "ref" not in check:
        claim = str(check.get("claim", ""))
        for prefix, f, r in FALLBACK_LINKS:
            if claim.startswith(prefix):
                fig = fig if "figure" in check else f
                ref = ref if "ref" in check else r
                break
    return (fig if fig in figures else None), (ref if isinstance(ref, str) and ref else None)


_TONE = {
    "strong": "b-strong", "dedicated mechanism": "b-strong",
    "medium": "b-medium", "partial evidence": "b-medium",
    "weak": "b-weak", "none": "b-weak", "no mechanism": "b-weak", "no stop behaviour": "b-weak",
}  # fmt: skip


def _status(passed: Any, tier: str = "") -> tuple[str, str]:
    if passed is None and tier in ("describe", "info"):
        return (
            '<span class="note" title="a description or information, not judged">– info</span>',
            "1",
        )
    if passed is True:
        return '<span class="pass" title="passed">✓ pass</span>', "2"
    if passed is False:
        return '<span class="fail" title="failed">✗ fail</span>', "0"
    return '<span class="na" title="not judged (the note says why)">? n/a</span>', "1"


def _measured(c: dict[str, Any]) -> str:
    """The measured-value cell (<td>): a number with its CI, or a sentence."""
    ci = c.get("ci") or [None, None]
    v = c.get("value")
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f'<td class="num" data-v="{v!r}">{estimate_cell(v, ci[0], ci[1], c.get("n"))}</td>'
    return f'<td class="note">{esc(num(v))}</td>'


def _headline(doc: dict[str, Any]) -> str:
    v = doc.get("verdicts") or {}
    overall = v.get("overall")
    checks = [c for c in v.get("checks") or [] if isinstance(c, dict)]
    raw = v.get("headline")
    hl: dict[str, Any] = raw if isinstance(raw, dict) else {}
    badges = ""
    if overall:
        tone = _TONE.get(str(overall), "b-medium")
        word = f"{overall} evidence" if overall in ("strong", "medium", "weak") else overall
        badges += f'<span class="badge {tone}">overall: {esc(word)}</span>'
    if hl.get("representation"):
        rep = str(hl["representation"])
        badges += f'<span class="badge {_TONE.get(rep, "")}">representation: {esc(rep)}</span>'
    flags = hl.get("causal")
    if isinstance(flags, dict):
        for k, v in flags.items():
            word = {True: "yes", False: "no"}.get(v, "not measured")
            tone = {True: "b-strong", False: "b-weak"}.get(v, "")
            badges += f'<span class="badge {tone}">{esc(k)}: {word}</span>'
    elif flags:
        badges += f'<span class="badge">causal: {esc(flags)}</span>'
    if hl.get("causal_text"):
        badges += f'<div class="note">causal: {esc(hl["causal_text"])}</div>'
    judged = [c for c in checks if c.get("passed") is not None]
    passed = sum(1 for c in judged if c.get("passed") is True)
    text = hl.get("text") or (
        f"Overall {overall or 'n/a'} evidence for a dedicated $STOP mechanism, computed from the "
        f"checklist below: {passed} of {len(judged)} judged checks passed."
    )
    return f'<div class="headline">{badges}<p>{esc(text)}</p></div>'


def checklist_section(page: Page) -> str:
    doc = page.doc
    checks = [c for c in (doc.get("verdicts") or {}).get("checks") or [] if isinstance(c, dict)]
    if not checks:
        return _headline(doc) + '<p class="note">No checklist in results.json.</p>'
    rows, entries = [], []
    for i, c in enumerate(checks):
        fig, ref = _links(c, page.figures)
        icon, sv = _status(c.get("passed"), str(c.get("tier", "")))
        null = num(c.get("null")) if c.get("null") is not None else ""
        if c.get("null_name"):
            null = f"{null} ({c['null_name']})" if null else str(c["null_name"])
        expl = " ".join(str(c[k]) for k in ("meaning", "note") if c.get(k))
        links = f'<a href="#num-{i}">numbers</a>'
        if fig:
            links = f'<a href="#fig-{esc(fig)}">figure</a> · ' + links
        rows.append(
            f'<tr class="check" data-claim="{esc(c.get("claim", ""))}"'
            + (f' data-fig="{esc(fig)}"' if fig else "")
            + f'><td data-v="{sv}">{icon}</td><td class="tier">{esc(c.get("tier", ""))}</td>'
            f"<td><b>{esc(c.get('claim', ''))}</b>"
            + (f'<div class="note">{esc(expl)}</div>' if expl else "")
            + f"</td>{_measured(c)}"
            f'<td class="num">{esc(num(c.get("n")) if c.get("n") is not None else "")}</td>'
            f"<td>{esc(null)}</td><td>{esc(c.get('threshold', ''))}</td><td>{links}</td></tr>"
        )
        target = resolve(doc, ref)
        own = {
            k: c.get(k)
            for k in ("value", "ci", "n", "null", "null_name", "threshold", "note")
            if k in c
        }
        entries.append(
            f'<details class="num-entry" id="num-{i}"><summary>{esc(c.get("claim", ""))}'
            + (f" — results.json <code>{esc(ref)}</code>" if ref else "")
            + "</summary>"
            + generic(own)
            + (generic(target) if target is not None else "")
            + "</details>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("", "tier", "claim", "measured [95% CI]", "n", "null", "threshold", "see")
    )
    viewer = (
        '<div class="viewer"><img id="viewer-img" alt="figure of the selected check" style="display:none">'
        '<div id="viewer-cap" class="cap">hover or click a line to see its figure</div></div>'
    )
    listing = (
        f'<div><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<p class="note">✓ passed, ✗ failed, ? not judged (the note says why), – info: a description, not judged. Every value carries its '
        "95% CI, n and null; thresholds are configuration (see Run metadata).</p></div>"
    )
    numbers = (
        "<h3>Numbers behind each line</h3>"
        '<p class="note">The check as judged, then the results.json entry it reads; the '
        "“numbers” link of a line opens its entry.</p>" + "".join(entries)
    )
    return _headline(doc) + f'<div class="checks">{listing}{viewer}</div>' + numbers
