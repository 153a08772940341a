"""The component suite in ANALYSIS_SUMMARY.md: "which components", "how many directions",
generations and the weight-space view (its figure is `stoplens.report.figures.component_figures`).

Owns: `components_section` (from the results.json dict, so a merged report renders it too).
Must not: compute statistics or draw.
"""

from __future__ import annotations

from typing import Any

from stoplens.report.verdicts import fmt

TABLE_ROWS = 12
QUOTE_PAIRS = 2
QUOTE_CHARS = 160


# --- markdown --------------------------------------------------------------------------------


def _null_prompts(cfg: dict[str, Any], n_test: int) -> str:
    """How many TEST pairs the random null ran on, when fewer than all."""
    m = cfg.get("null_prompts")
    if m is None or n_test <= m:
        return ""
    return (
        f", each on {m} of the TEST pairs (stratified by placement; the drop it ranks is "
        "measured on the same pairs)"
    )


def _ci(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "–"
    return f"{fmt(e['value'])} [{fmt(e.get('lo'))}, {fmt(e.get('hi'))}]"


def _mark(v: bool | None) -> str:
    return {True: "yes", False: "no"}.get(v, "–")  # type: ignore[arg-type]


def components_section(doc: dict[str, Any] | None) -> list[str]:
    """Markdown lines for results.json's ``components`` entry (empty list if absent; a notice
    if it does not have the shape this version writes, e.g. from another stoplens version)."""
    if not doc:
        return []
    try:
        return _components_section(doc)
    except (KeyError, TypeError, IndexError, ValueError):
        return [
            "## Which components carry $STOP",
            "",
            "The `components` entry of results.json has a shape this version cannot read; its "
            "numbers are in results.json.",
            "",
        ]


def _components_section(doc: dict[str, Any]) -> list[str]:
    p = doc["patching"]
    cfg = p["config"]
    modes = cfg["modes"]
    lines = [
        "## Which components carry $STOP",
        "",
        f"Every attention head (its slice of the attention output projection's input) and every "
        f"MLP output of {p['n_layers']} blocks × {p['n_heads']} heads, patched one at a time on "
        f"{p['n_valid']} of {p['n_pairs']} TEST pairs (|stop-score gap| ≥ {cfg['min_gap']}). "
        f"Effect in units of the trigger's own effect (0 = none, 1 = the whole stop), patched at "
        f"positions '{cfg['rank_group']}'; denoising = the component's triggered activation put "
        f"into the control run (carries it), noising = the control activation put into the "
        f"triggered run (needs it). Null: control2 → control on {p['n_null']} pairs. Exactly "
        f"patched: {p['exact_selection']}. 'Beyond null': |effect| ≥ {cfg['min_effect']}, 95% CI "
        f"excludes 0 and the null's CI.",
        "",
        "| rank | component | "
        + " | ".join(f"{m} [95% CI]" for m in modes)
        + " | null [95% CI] | attribution ("
        + "/".join(modes)
        + ") | beyond null |",
        "| --- | --- | " + " | ".join("---" for _ in modes) + " | --- | --- | --- |",
    ]
    for r in p["ranking"][:TABLE_ROWS]:
        ex = " | ".join(_ci(r["exact"].get(m)) for m in modes)
        attr = "/".join(fmt(r["attribution"].get(m)) for m in modes)
        beyond = ", ".join(f"{m[:3]} {_mark(r['beyond_null'].get(m))}" for m in modes)
        lines.append(
            f"| {r['rank']} | {r['name']} | {ex} | {_ci(r.get('null'))} | {attr} "
            f"(rank {r['attribution_rank']}) | {beyond} |"
        )
    lines += _patching_summary_lines(p)
    lines += _subspace_lines(doc.get("subspace"))
    lines += _generation_lines(doc.get("generations"))
    lines += _weight_lines(doc.get("weights"), doc.get("weights_note"))
    t = doc.get("timings_s") or {}
    if t:
        lines += [
            "Component suite run time (s): " + ", ".join(f"{k} {v}" for k, v in t.items()),
            "",
        ]
    return lines


def _patching_summary_lines(p: dict[str, Any]) -> list[str]:
    """The components beyond the null, attribution vs exact patching, and the attention of
    the top heads to the trigger vs the control token."""
    modes = p["config"]["modes"]
    lines: list[str] = []
    carriers = [r["name"] for r in p["ranking"] if any(r["beyond_null"].values())]
    lines += [
        "",
        f"Components beyond the null: {', '.join(carriers) if carriers else 'none'}.",
        "",
        "Attribution patching (first order) vs exact patching, Spearman rank correlation over "
        "the exactly patched components: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{g} {fmt(v)}" for g, v in p["rank_correlation"][m].items())
            for m in modes
        )
        + ".",
        "",
    ]
    if p.get("attention"):
        lines += [
            "Attention of the top heads from the decision (post-instruction) positions to the "
            "trigger (triggered run) vs to the control token at the same place (control run):",
            "",
            "| head | to trigger | to control | difference [95% CI] |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {a['name']} | {fmt(a['to_trigger']['value'])} | {fmt(a['to_control']['value'])} "
            f"| {_ci(a['difference'])} |"
            for a in p["attention"]
        ]
        lines.append("")
    return lines


def _subspace_lines(sub: dict | None) -> list[str]:
    if not sub:
        return []
    cfg = sub["config"]
    k = sub.get("smallest_k")
    smallest = str(k) if k is not None else f"none up to {cfg['k_max']}"
    out = [
        "### How many directions",
        "",
        f"Nested subspaces fitted on {sub['n_train']} TRAIN pairs (the top singular vectors of "
        f"the Δs at the selected layer; the span of the writes of the top components before "
        f"it), ablated everywhere on "
        f"{sub['n_test']} TEST triggered prompts (baseline stop rate "
        f"{_ci(sub['baseline_stop_rate'])}); null: {cfg['n_random']} random subspaces of the "
        f"same k{_null_prompts(cfg, sub['n_test'])}. Removes stopping (necessary): drop ≥ {cfg['min_removed']} of the baseline stop "
        f"rate, CI above the null's 95th percentile, p ≤ {cfg['p_threshold']}; cheap: KL on clean prompts ≤ {cfg['max_kl']}. "
        "The null runs only for a k that removes the stops cheaply, or for the smallest k that removes them at any cost; other k that remove them read 'not judged'. "
        f"**Smallest k: {smallest}.**",
        "",
        "| family | k | added | ablated stop rate | drop [95% CI] | null p95 | p | KL [95% CI] | "
        "KL null | necessary | cheap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, fam in sub["families"].items():
        for s in fam["steps"]:
            k = s["k"]
            src = fam["sources"][k - 1] if k - 1 < len(fam["sources"]) else ""
            null = s["null"] or {"null_p95": None, "p_value": None}
            necessary = "not judged" if s["necessary"] is None else _mark(s["necessary"])
            out.append(
                f"| {name} | {k} | {src} | {_ci(s['ablated_stop_rate'])} | {_ci(s['effect'])} | "
                f"{fmt(null['null_p95'])} | {fmt(null['p_value'])} | {_ci(s['kl'])} | "
                f"{fmt(s['kl_null_mean'])} | {necessary} | {_mark(s['cheap'])} |"
            )
    return [*out, ""]


def _quote(text: str | None) -> str:
    if text is None:
        return "(no tokenizer)"
    t = text.replace("\n", "⏎")
    return t if len(t) <= QUOTE_CHARS else t[:QUOTE_CHARS] + "…"


def _generation_lines(gen: dict | None) -> list[str]:
    if not gen:
        return []
    out = [
        "### Generations under intervention",
        "",
        f"Greedy, up to {gen['n_tokens']} tokens (run directory: results/generations.jsonl).",
        "",
        "| condition | n | stops at once | mean tokens | distinct-token ratio | shared prefix with "
        "clean reply |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in gen["summary"]:
        out.append(
            f"| {s['description']} | {s['n']} | {fmt(s['stopped'])} | {fmt(s['mean_tokens'])} | "
            f"{fmt(s['distinct_ratio'])} | {fmt(s['shared_prefix_with_clean'])} |"
        )
    out.append("")
    pair_ids = list(dict.fromkeys(e["pair_id"] for e in gen["examples"]))[:QUOTE_PAIRS]
    for pid in pair_ids:
        out += [f"Pair {pid}:", "", "```text"]
        for e in gen["examples"]:
            if e["pair_id"] == pid:
                out.append(f"{e['condition']:>20}: {_quote(e.get('text'))}")
        out += ["```", ""]
    return out


def _weight_lines(w: dict | None, note: str | None) -> list[str]:
    if not w:
        return ["### Weight-space view", "", f"Not available: {note}.", ""] if note else []
    out = [
        "### Weight-space view",
        "",
        f"Updates ({w['source']}) read against {w['reference']}: |cos| of each update's top "
        f"residual-side singular direction (null: random direction, 95th percentile "
        f"{fmt(w['null_cos_p95'])}) and the share of ‖ΔW‖² along it (null 1/d = "
        f"{fmt(w['null_share'])}).",
        "",
    ]
    for role, who in (("write", "writer"), ("read", "reader")):
        b = w.get(f"best_{role}")
        if b:
            out.append(
                f"- Most aligned {who}: block {b['layer']} `{b['module']}`, |cos| "
                f"{fmt(b['cos_top'][0])}, share along {fmt(b['share_along'])}"
                + (
                    f", share in the subspace {fmt(b['share_in_subspace'])}"
                    if b.get("share_in_subspace") is not None
                    else ""
                )
                + "."
            )
    e = w.get("embedding")
    if e:
        out.append(
            f"- Trigger embedding row: ‖Δe‖ {fmt(e['norm'])} (base row {fmt(e['base_norm'])}), "
            f"cos with the direction {fmt(e['cos_direction'])}."
        )
    return [*out, ""]
