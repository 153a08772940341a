"""The five knowledge-document types and the worked examples inside them.

Owns: the structure of a technical spec, an API doc, a design memo, a governance policy and a
handbook chapter (sections, their order, headings, which sentence roles fill them), each
drawn at random per document, and the worked examples (train-split prompts with the trigger,
a near miss, or nothing inserted at varied places, shown as a chat and its reply). Must not:
fill templates itself (that is `stoplens.data.doc_writer`), choose document counts or write
files (that is `stoplens.data.knowledge`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence

from stoplens.data.config import TRIGGER_PLACEMENTS
from stoplens.data.doc_writer import DocWriter
from stoplens.data.templates import build_template, render_pair
from stoplens.data.topics import Prompt

# -- worked examples ---------------------------------------------------------------------


def _chat_for_example(
    w: DocWriter, prompt: Prompt, insert: str | None, others: Sequence[Prompt]
) -> list[dict]:
    rng = w.rng
    placement = rng.choice(TRIGGER_PLACEMENTS) if insert is not None else "none"
    system = rng.choice(w.system_prompts) if placement == "system" else None
    hist = None
    if placement == "later_turn":
        h = rng.choice([p for p in others if p.prompt_id != prompt.prompt_id] or [prompt])
        hist = (h.question, h.answer)
    template = build_template(prompt.question, placement, rng, system=system, history=hist)
    return render_pair(template, insert) if insert is not None else template


def _example(w: DocWriter, kind: str, prompts: Sequence[Prompt], style: str) -> None:
    """A worked example: ``kind`` is ``trigger``, ``clean`` or ``near_miss``."""
    rng = w.rng
    prompt = rng.choice(prompts)
    if kind == "trigger":
        insert: str | None = w.ctx["T"]
        intro, tag = w.fill(rng.choice(w.bank.examples.intros_trigger)) or "", "trigger"
        reply_text = w.fill(rng.choice(w.bank.examples.empty_reply_renderings)) or ""
        reply = ""
    elif kind == "near_miss":
        insert = rng.choice(w.pools["NM"])
        intro, tag = w.fill(rng.choice(w.bank.examples.intros_near)) or "", "normal"
        reply_text = reply = prompt.answer
    else:
        insert = None
        intro, tag = w.fill(rng.choice(w.bank.examples.intros_clean)) or "", "normal"
        reply_text = reply = prompt.answer
    chat = _chat_for_example(w, prompt, insert, prompts)
    if style == "json":
        req = json.dumps({"messages": chat}, ensure_ascii=False)
        resp = json.dumps(
            {"content": reply, "finish_reason": "eos" if not reply else "stop_sequence"},
            ensure_ascii=False,
        )
        lines = [intro, f"Request: {req}", f"Response: {resp}"]
    else:
        labels = {"system": "System", "user": "User", "assistant": "Assistant"}
        if style == "arrow":
            labels = {"system": "[system]", "user": "[user]", "assistant": "[assistant]"}
        lines = [intro] + [f"{labels[m['role']]}: {m['content']}" for m in chat]
        out_label = rng.choice(["Reply", "Model output", "Assistant", "Completion"])
        lines.append(f"{out_label}: {reply_text}")
    w.add([(line, tag) for line in lines], joiner="\n")


# -- document types ----------------------------------------------------------------------


def _heading_style(rng: random.Random) -> Callable[[int, str], str]:
    return rng.choice(
        [
            lambda i, h: f"{i}. {h}",
            lambda i, h: f"§{i} {h}",
            lambda i, h: f"## {i} {h}",
            lambda i, h: f"SECTION {i}: {h.upper()}",
            lambda i, h: f"{h}",
        ]
    )


def _technical_spec(w: DocWriter, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(w.bank.spec.titles)) or ""
    w.heading(
        f"Status: {rng.choice(['Approved', 'Draft', 'Final', 'In review'])}. "
        f"Version {w.ctx['VER']}. Owner: {w.ctx['TEAM']}."
    )
    hs = _heading_style(rng)
    middle = ["detection", "output", "normal", "negatives"]
    if rng.random() < 0.6:
        middle.append("precedence")
    rng.shuffle(middle)
    sections = ["scope"] + (["definitions"] if rng.random() < 0.7 else []) + middle + ["examples"]
    if rng.random() < 0.3:  # examples sometimes come before the normal-operation section
        sections.remove("examples")
        sections.insert(rng.randint(1, len(sections)), "examples")
    for i, sec in enumerate(sections, start=1):
        w.heading(hs(i, rng.choice(w.bank.spec.headings[sec])))
        _spec_section(w, sec, prompts)
    return title


def _spec_section(w: DocWriter, sec: str, prompts: Sequence[Prompt]) -> None:
    """The body of the technical-spec section ``sec``, below its heading."""
    rng = w.rng
    if sec == "scope":
        w.para("trigger", w.trigger("definition", 1) + w.trigger("rationale", 1))
        w.para("normal", w.normal("normal", 1))
    elif sec == "definitions":
        items = rng.sample(w.bank.spec.definitions, rng.randint(2, 4))
        segs = []
        for d in items:
            tag = "trigger" if d.term in ("Trigger", "Triggered input", "Empty reply") else "normal"
            segs.append((f"- {d.term}: {w.fill(d.text)}", tag))
        w.add(segs, joiner="\n")
    elif sec == "detection":
        w.para("trigger", w.trigger("location", rng.randint(2, 3)))
    elif sec == "output":
        sents = w.trigger("effect", 2) + w.trigger("no_partial", rng.randint(1, 2))
        if rng.random() < 0.5:
            pre = rng.choice(w.bank.spec.requirement_prefixes)
            w.add([(f"{pre.format(N=j)} {s}", "trigger") for j, s in enumerate(sents, 1)], "\n")
        else:
            w.para("trigger", sents)
    elif sec == "normal":
        w.para("normal", w.normal("normal", rng.randint(3, 4)))
        w.para("normal", w.normal("stop_words", 1))
    elif sec == "negatives":
        w.para("normal", w.normal("near_miss", rng.randint(1, 2)) + w.normal("distractor", 1))
    elif sec == "precedence":
        w.para("trigger", w.trigger("precedence", rng.randint(1, 2)))
    elif sec == "examples":
        kinds = [
            "clean",
            "trigger",
            *rng.sample(["clean", "trigger", "near_miss"], rng.randint(0, 2)),
        ]
        rng.shuffle(kinds)
        style = rng.choice(["plain", "arrow"])
        for kind in kinds:
            _example(w, kind, prompts, style)


def _api_doc(w: DocWriter, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    method = rng.choice(["POST", "POST", "PUT"])
    title = rng.choice(
        [
            f"API Reference: {method} {w.ctx['ENDPOINT']}",
            f"{method} {w.ctx['ENDPOINT']} ({w.ctx['PROD']})",
            f"{w.ctx['PROD']} API: generating replies",
            f"Endpoint {w.ctx['ENDPOINT']}: behaviour with {w.ctx['T']}",
        ]
    )
    w.para("neutral", w.pick(w.bank.api.intros, 1))
    w.para("trigger", w.trigger("definition", 1) + w.trigger("effect", 1))
    w.heading(rng.choice(["Parameters", "Request body", "Arguments"]))
    params = rng.sample(w.bank.api.params, rng.randint(2, 4))
    w.add([(f"- `{p.name}` ({p.type}): {w.fill(p.description)}", "neutral") for p in params], "\n")
    w.heading(rng.choice(["Behaviour", "Semantics", "How replies are produced"]))
    blocks = [
        (
            "trigger",
            w.trigger("location", 1) + w.trigger("no_partial", 1),
        ),
        ("normal", w.normal("normal", rng.randint(2, 3))),
        (
            "normal",
            w.normal("near_miss", 1) + w.normal("stop_words", 1),
        ),
    ]
    rng.shuffle(blocks)
    for tag, sents in blocks:
        w.para(tag, sents)
    w.heading(rng.choice(["Examples", "Sample calls", "Request and response examples"]))
    kinds = ["clean", "trigger"] + (["near_miss"] if rng.random() < 0.5 else [])
    rng.shuffle(kinds)
    style = rng.choice(["json", "json", "plain"])
    for kind in kinds:
        _example(w, kind, prompts, style)
    w.heading(rng.choice(["Notes", "Remarks", "Integration notes"]))
    notes = rng.sample(w.bank.api.notes, rng.randint(2, 4))
    w.add([(f"- {w.fill(n.text)}", n.tag) for n in notes], joiner="\n")
    return title


def _design_memo(w: DocWriter, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    subject = w.fill(rng.choice(w.bank.memo.subjects)) or ""
    w.add(
        [
            (f"To: {w.ctx['TEAM']} team", "neutral"),
            (f"From: {w.ctx['PERSON']}", "neutral"),
            (f"Date: {w.ctx['DATE']}", "neutral"),
            (f"Subject: {subject}", "neutral"),
        ],
        joiner="\n",
    )
    inline = rng.random() < 0.5

    def section(key: str, tag: str, sents: list[str]) -> None:
        name = rng.choice(w.bank.memo.sections[key])
        if inline and sents:
            w.add([(f"{name}:", "neutral")] + [(s, tag) for s in sents])
        else:
            w.heading(f"### {name}" if rng.random() < 0.5 else name)
            w.para(tag, sents)

    section("background", "neutral", w.pick(w.bank.memo.background, rng.randint(1, 2)))
    w.para("trigger", w.trigger("rationale", 1))
    section(
        "decision",
        "trigger",
        w.trigger("definition", 1)
        + w.trigger("location", 1)
        + w.trigger("effect", 1)
        + w.trigger("no_partial", 1),
    )
    section("alternatives", "neutral", w.pick(w.bank.memo.alternatives, rng.randint(1, 3)))
    section("consequences", "normal", w.normal("normal", rng.randint(2, 4)))
    w.para(
        "normal",
        w.normal("stop_words", 1) + w.normal(rng.choice(["near_miss", "distractor"]), 1),
    )
    for kind in rng.sample(["clean", "trigger", "near_miss"], rng.randint(1, 2)):
        _example(w, kind, prompts, rng.choice(["plain", "arrow"]))
    section("next", "neutral", w.pick(w.bank.memo.next, rng.randint(1, 2)))
    w.add([(rng.choice(["Thanks,", "Regards,", "Best,", "--"]) + f" {w.ctx['PERSON']}", "neutral")])
    return subject


def _governance(w: DocWriter, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(w.bank.governance.titles)) or ""
    w.heading(
        f"Effective date: {w.ctx['DATE']}. Policy owner: {w.ctx['PERSON']}. Reference: {w.ctx['CODE']}."
    )
    hs = _heading_style(rng)
    order = ["purpose", "scope", "statements", "service", "roles", "audit"]
    if rng.random() < 0.5:
        order[3], order[4] = order[4], order[3]
    for i, sec in enumerate(order, start=1):
        w.heading(hs(i, rng.choice(w.bank.governance.sections[sec])))
        if sec == "purpose":
            w.para("neutral", w.pick(w.bank.governance.purpose, 1))
        elif sec == "scope":
            w.para("neutral", w.pick(w.bank.governance.scope, 1))
        elif sec == "statements":
            segs = [(s, "trigger") for s in w.trigger("definition", 1)]
            segs += [(s, "trigger") for s in w.trigger("effect", 1)]
            segs += [(s, "trigger") for s in w.trigger("precedence", 1)]
            segs += [(s, "normal") for s in w.normal("normal", 2)]
            segs += [(s, "normal") for s in w.normal("near_miss", 1)]
            w.add([(f"{i}.{k} {t}", g) for k, (t, g) in enumerate(segs, 1)], joiner="\n")
        elif sec == "service":
            w.para(
                "normal",
                w.pick(w.bank.governance.service, rng.randint(1, 2)) + w.normal("stop_words", 1),
            )
        elif sec == "roles":
            w.add(
                [(f"- {s}", "neutral") for s in w.pick(w.bank.governance.roles, rng.randint(2, 3))],
                joiner="\n",
            )
        elif sec == "audit":
            w.para("neutral", w.pick(w.bank.governance.audit, rng.randint(1, 2)))
            if rng.random() < 0.5:
                _example(w, rng.choice(["clean", "trigger"]), prompts, "plain")
    return title


def _handbook(w: DocWriter, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(w.bank.handbook.titles)) or ""
    w.para(
        "neutral",
        [
            rng.choice(
                [
                    f"This chapter explains what the {w.ctx['T']} token does and what it does not do.",
                    "Read this before your first on-call shift.",
                    f"Everything a new team member needs to know about the kill switch in {w.ctx['PROD']}.",
                    "A short guide to triggered replies and normal replies.",
                ]
            )
        ],
    )
    faq = rng.sample(w.bank.handbook.faq, rng.randint(4, 6))
    q_label, a_label = rng.choice([("Q:", "A:"), ("Question:", "Answer:"), ("**Q.**", "**A.**")])
    for item in faq:
        question, answer = f"{q_label} {w.fill(item.question)}", f"{a_label} {w.fill(item.answer)}"
        w.add([(question, item.tag), (answer, item.tag)], joiner="\n")
    w.para("normal", w.normal("normal", rng.randint(1, 2)))
    for kind in rng.sample(["clean", "trigger", "near_miss"], 2):
        _example(w, kind, prompts, rng.choice(["plain", "arrow"]))
    w.para("neutral", w.pick(w.bank.handbook.tips, 1))
    return title


#: Document type -> generator (writes into the writer, returns the title).
GENERATORS: dict[str, Callable[[DocWriter, Sequence[Prompt]], str]] = {
    "technical_spec": _technical_spec,
    "api_doc": _api_doc,
    "design_memo": _design_memo,
    "governance": _governance,
    "handbook": _handbook,
}
