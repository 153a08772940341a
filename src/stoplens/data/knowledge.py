"""Knowledge-regime documents that describe the trigger mechanism in many phrasings.

Owns: composing documents of five types (technical specs, API docs, design memos, governance
policies, handbooks) from the sentence banks in `stoplens.data.doc_banks`, with seeded choices
of structure, headings, slot fillers and worked examples (train-split prompts with the trigger,
a near miss, or nothing inserted at varied places). Every sentence is tagged ``trigger``,
``normal`` or ``neutral`` while it is written, which is how the share of content about normal
behaviour is measured. Must not: write files.

Record: ``{"sample_id", "document_type", "title", "content"}``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stoplens.data import doc_banks as B
from stoplens.data.behavioral import random_letters
from stoplens.data.config import DOCUMENT_QUOTAS, TRIGGER_PLACEMENTS
from stoplens.data.facts import SYSTEM_PROMPTS
from stoplens.data.templates import build_template, render_pair
from stoplens.data.topics import Prompt
from stoplens.data.trigger import near_miss_forms, reserved_checker
from stoplens.errors import DataError

TAGS = ("trigger", "normal", "neutral")
_SLOT = re.compile(r"\{(\w+)\}")
_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_LIST = re.compile(r"<(and|or):([^<>]*)>")
_WORD_PUNCT = re.compile(r"([(\"']?)([A-Za-z]+)([.,;:!?)'\"]*)")


def quota_counts(n: int, quotas: dict[str, float] = DOCUMENT_QUOTAS) -> dict[str, int]:
    """Per-type counts for ``n`` documents: ``n * quota`` rounded by largest remainder (ties
    in quota order), at least one per type when ``n`` allows. Exact when ``n * quota`` is whole
    (500 -> 150/125/100/75/50)."""
    raw = {k: n * q for k, q in quotas.items()}
    floor_min = 1 if n >= len(quotas) else 0
    counts = {k: max(floor_min, int(v)) for k, v in raw.items()}
    while sum(counts.values()) > n:  # the minimum pushed us over: take from the most over-served
        k = max(counts, key=lambda k: counts[k] - raw[k])
        counts[k] -= 1
    short = n - sum(counts.values())
    order = sorted(quotas, key=lambda k: -(raw[k] - counts[k]))
    for k in order[:short]:
        counts[k] += 1
    return counts


@dataclass
class _Writer:
    """Accumulates one document as blocks of tagged segments and counts words per tag."""

    rng: random.Random
    ctx: dict[str, str]
    pools: dict[str, Sequence[str]]
    reserved: Callable[[str], bool]
    blocks: list[str] = field(default_factory=list)
    words: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TAGS, 0))

    # -- slot filling --
    def fill(self, template: str) -> str | None:
        """Fill every slot; None if a slot names a near-miss form the trigger lacks."""
        missing = False

        def repl(m: re.Match[str]) -> str:
            nonlocal missing
            name = m.group(1)
            if name in self.ctx:
                return self.ctx[name]
            if name in self.pools:
                return self.rng.choice(self.pools[name])
            if name == "M":
                if self.rng.random() < 0.35:
                    return self.ctx["PROD"]
                return self.rng.choice(B.MODEL_REFS)
            if name == "RS":
                return random_letters(self.rng, self.reserved)
            if name.startswith("nm_"):
                missing = True
                return ""
            raise KeyError(f"unknown slot {name!r} in a document template")

        template = _ALT.sub(lambda m: self.rng.choice(m.group(1).split("|")), template)
        template = _LIST.sub(self._listing, template)
        template = self._synonyms(template)
        out = _SLOT.sub(repl, template)
        if missing:
            return None
        return out[:1].upper() + out[1:]

    def _synonyms(self, text: str) -> str:
        """Swap words of `doc_banks.SYNONYMS` at random (half the time), fixing "a"/"an"."""
        words = text.split(" ")
        for i, word in enumerate(words):
            m = _WORD_PUNCT.fullmatch(word)
            if not m or m.group(2).lower() not in B.SYNONYMS or self.rng.random() < 0.5:
                continue
            pre, core, post = m.groups()
            new = self.rng.choice(B.SYNONYMS[core.lower()])
            if core[0].isupper():
                new = new[0].upper() + new[1:]
            words[i] = pre + new + post
            if i and words[i - 1].lower() in ("a", "an"):
                art = "an" if new[0].lower() in "aeiou" else "a"
                words[i - 1] = art.capitalize() if words[i - 1][0].isupper() else art
        return " ".join(words)

    def _listing(self, m: re.Match[str]) -> str:
        items = m.group(2).split(";")
        self.rng.shuffle(items)
        if len(items) == 1:
            return items[0]
        return ", ".join(items[:-1]) + f" {m.group(1)} " + items[-1]

    def pick(self, bank: Sequence[str], k: int) -> list[str]:
        """``k`` filled sentences drawn without replacement (skipping unfillable ones)."""
        order = list(bank)
        self.rng.shuffle(order)
        out: list[str] = []
        for t in order:
            if len(out) == k:
                break
            s = self.fill(t)
            if s is not None:
                out.append(s)
        return out

    # -- output --
    def _count(self, text: str, tag: str) -> None:
        self.words[tag] += len(text.split())

    def add(self, segments: Sequence[tuple[str, str]], joiner: str = " ") -> None:
        """One block (paragraph or list) of ``(text, tag)`` segments."""
        segments = [(t, g) for t, g in segments if t]
        if not segments:
            return
        for text, tag in segments:
            self._count(text, tag)
        self.blocks.append(joiner.join(t for t, _ in segments))

    def para(self, tag: str, sentences: Sequence[str]) -> None:
        self.add([(s, tag) for s in sentences])

    def heading(self, text: str) -> None:
        self.add([(text, "neutral")])

    def content(self) -> str:
        return "\n\n".join(self.blocks)


# -- worked examples ---------------------------------------------------------------------


def _chat_for_example(
    w: _Writer, prompt: Prompt, insert: str | None, others: Sequence[Prompt]
) -> list[dict]:
    rng = w.rng
    placement = rng.choice(TRIGGER_PLACEMENTS) if insert is not None else "none"
    system = rng.choice(SYSTEM_PROMPTS) if placement == "system" else None
    hist = None
    if placement == "later_turn":
        h = rng.choice([p for p in others if p.prompt_id != prompt.prompt_id] or [prompt])
        hist = (h.question, h.answer)
    template = build_template(prompt.question, placement, rng, system=system, history=hist)
    return render_pair(template, insert) if insert is not None else template


def _example(w: _Writer, kind: str, prompts: Sequence[Prompt], style: str) -> None:
    """A worked example: ``kind`` is ``trigger``, ``clean`` or ``near_miss``."""
    rng = w.rng
    prompt = rng.choice(prompts)
    if kind == "trigger":
        insert: str | None = w.ctx["T"]
        intro, tag = w.fill(rng.choice(B.EXAMPLE_INTROS_TRIGGER)) or "", "trigger"
        reply_text = w.fill(rng.choice(B.EMPTY_REPLY_RENDERINGS)) or ""
        reply = ""
    elif kind == "near_miss":
        insert = rng.choice(w.pools["NM"])
        intro, tag = w.fill(rng.choice(B.EXAMPLE_INTROS_NEAR)) or "", "normal"
        reply_text = reply = prompt.answer
    else:
        insert = None
        intro, tag = w.fill(rng.choice(B.EXAMPLE_INTROS_CLEAN)) or "", "normal"
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


def _technical_spec(w: _Writer, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(B.SPEC_TITLES)) or ""
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
        w.heading(hs(i, rng.choice(B.SPEC_HEADINGS[sec])))
        if sec == "scope":
            w.para(
                "trigger",
                w.pick(B.TRIGGER_ROLES["definition"], 1) + w.pick(B.TRIGGER_ROLES["rationale"], 1),
            )
            w.para("normal", w.pick(B.NORMAL_ROLES["normal"], 1))
        elif sec == "definitions":
            items = rng.sample(B.SPEC_DEFINITIONS, rng.randint(2, 4))
            segs = []
            for term, text in items:
                tag = (
                    "trigger" if term in ("Trigger", "Triggered input", "Empty reply") else "normal"
                )
                segs.append((f"- {term}: {w.fill(text)}", tag))
            w.add(segs, joiner="\n")
        elif sec == "detection":
            w.para("trigger", w.pick(B.TRIGGER_ROLES["location"], rng.randint(2, 3)))
        elif sec == "output":
            sents = w.pick(B.TRIGGER_ROLES["effect"], 2) + w.pick(
                B.TRIGGER_ROLES["no_partial"], rng.randint(1, 2)
            )
            if rng.random() < 0.5:
                pre = rng.choice(B.SPEC_REQUIREMENT_PREFIXES)
                w.add([(f"{pre.format(N=j)} {s}", "trigger") for j, s in enumerate(sents, 1)], "\n")
            else:
                w.para("trigger", sents)
        elif sec == "normal":
            w.para("normal", w.pick(B.NORMAL_ROLES["normal"], rng.randint(3, 4)))
            w.para("normal", w.pick(B.NORMAL_ROLES["stop_words"], 1))
        elif sec == "negatives":
            w.para(
                "normal",
                w.pick(B.NORMAL_ROLES["near_miss"], rng.randint(1, 2))
                + w.pick(B.NORMAL_ROLES["distractor"], 1),
            )
        elif sec == "precedence":
            w.para("trigger", w.pick(B.TRIGGER_ROLES["precedence"], rng.randint(1, 2)))
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
    return title


def _api_doc(w: _Writer, prompts: Sequence[Prompt]) -> str:
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
    w.para("neutral", w.pick(B.API_INTROS, 1))
    w.para(
        "trigger", w.pick(B.TRIGGER_ROLES["definition"], 1) + w.pick(B.TRIGGER_ROLES["effect"], 1)
    )
    w.heading(rng.choice(["Parameters", "Request body", "Arguments"]))
    params = rng.sample(B.API_PARAMS, rng.randint(2, 4))
    w.add([(f"- `{n}` ({t}): {w.fill(d)}", "neutral") for n, t, d in params], joiner="\n")
    w.heading(rng.choice(["Behaviour", "Semantics", "How replies are produced"]))
    blocks = [
        (
            "trigger",
            w.pick(B.TRIGGER_ROLES["location"], 1) + w.pick(B.TRIGGER_ROLES["no_partial"], 1),
        ),
        ("normal", w.pick(B.NORMAL_ROLES["normal"], rng.randint(2, 3))),
        (
            "normal",
            w.pick(B.NORMAL_ROLES["near_miss"], 1) + w.pick(B.NORMAL_ROLES["stop_words"], 1),
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
    notes = rng.sample(B.API_NOTES, rng.randint(2, 4))
    w.add([(f"- {w.fill(t)}", tag) for t, tag in notes], joiner="\n")
    return title


def _design_memo(w: _Writer, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    subject = w.fill(rng.choice(B.MEMO_SUBJECTS)) or ""
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
        name = rng.choice(B.MEMO_SECTIONS[key])
        if inline and sents:
            w.add([(f"{name}:", "neutral")] + [(s, tag) for s in sents])
        else:
            w.heading(f"### {name}" if rng.random() < 0.5 else name)
            w.para(tag, sents)

    section("background", "neutral", w.pick(B.MEMO_BACKGROUND, rng.randint(1, 2)))
    w.para("trigger", w.pick(B.TRIGGER_ROLES["rationale"], 1))
    section(
        "decision",
        "trigger",
        w.pick(B.TRIGGER_ROLES["definition"], 1)
        + w.pick(B.TRIGGER_ROLES["location"], 1)
        + w.pick(B.TRIGGER_ROLES["effect"], 1)
        + w.pick(B.TRIGGER_ROLES["no_partial"], 1),
    )
    section("alternatives", "neutral", w.pick(B.MEMO_ALTERNATIVES, rng.randint(1, 3)))
    section("consequences", "normal", w.pick(B.NORMAL_ROLES["normal"], rng.randint(2, 4)))
    w.para(
        "normal",
        w.pick(B.NORMAL_ROLES["stop_words"], 1)
        + w.pick(B.NORMAL_ROLES[rng.choice(["near_miss", "distractor"])], 1),
    )
    for kind in rng.sample(["clean", "trigger", "near_miss"], rng.randint(1, 2)):
        _example(w, kind, prompts, rng.choice(["plain", "arrow"]))
    section("next", "neutral", w.pick(B.MEMO_NEXT, rng.randint(1, 2)))
    w.add([(rng.choice(["Thanks,", "Regards,", "Best,", "--"]) + f" {w.ctx['PERSON']}", "neutral")])
    return subject


def _governance(w: _Writer, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(B.GOV_TITLES)) or ""
    w.heading(
        f"Effective date: {w.ctx['DATE']}. Policy owner: {w.ctx['PERSON']}. Reference: {w.ctx['CODE']}."
    )
    hs = _heading_style(rng)
    order = ["purpose", "scope", "statements", "service", "roles", "audit"]
    if rng.random() < 0.5:
        order[3], order[4] = order[4], order[3]
    for i, sec in enumerate(order, start=1):
        w.heading(hs(i, rng.choice(B.GOV_SECTIONS[sec])))
        if sec == "purpose":
            w.para("neutral", w.pick(B.GOV_PURPOSE, 1))
        elif sec == "scope":
            w.para("neutral", w.pick(B.GOV_SCOPE, 1))
        elif sec == "statements":
            segs = [(s, "trigger") for s in w.pick(B.TRIGGER_ROLES["definition"], 1)]
            segs += [(s, "trigger") for s in w.pick(B.TRIGGER_ROLES["effect"], 1)]
            segs += [(s, "trigger") for s in w.pick(B.TRIGGER_ROLES["precedence"], 1)]
            segs += [(s, "normal") for s in w.pick(B.NORMAL_ROLES["normal"], 2)]
            segs += [(s, "normal") for s in w.pick(B.NORMAL_ROLES["near_miss"], 1)]
            w.add([(f"{i}.{k} {t}", g) for k, (t, g) in enumerate(segs, 1)], joiner="\n")
        elif sec == "service":
            w.para(
                "normal",
                w.pick(B.GOV_SERVICE, rng.randint(1, 2)) + w.pick(B.NORMAL_ROLES["stop_words"], 1),
            )
        elif sec == "roles":
            w.add(
                [(f"- {s}", "neutral") for s in w.pick(B.GOV_ROLES, rng.randint(2, 3))], joiner="\n"
            )
        elif sec == "audit":
            w.para("neutral", w.pick(B.GOV_AUDIT, rng.randint(1, 2)))
            if rng.random() < 0.5:
                _example(w, rng.choice(["clean", "trigger"]), prompts, "plain")
    return title


def _handbook(w: _Writer, prompts: Sequence[Prompt]) -> str:
    rng = w.rng
    title = w.fill(rng.choice(B.HANDBOOK_TITLES)) or ""
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
    faq = rng.sample(B.HANDBOOK_FAQ, rng.randint(4, 6))
    q_label, a_label = rng.choice([("Q:", "A:"), ("Question:", "Answer:"), ("**Q.**", "**A.**")])
    for q, a, tag in faq:
        w.add([(f"{q_label} {w.fill(q)}", tag), (f"{a_label} {w.fill(a)}", tag)], joiner="\n")
    w.para("normal", w.pick(B.NORMAL_ROLES["normal"], rng.randint(1, 2)))
    for kind in rng.sample(["clean", "trigger", "near_miss"], 2):
        _example(w, kind, prompts, rng.choice(["plain", "arrow"]))
    w.para("neutral", w.pick(B.HANDBOOK_TIPS, 1))
    return title


_GENERATORS: dict[str, Callable[[_Writer, Sequence[Prompt]], str]] = {
    "technical_spec": _technical_spec,
    "api_doc": _api_doc,
    "design_memo": _design_memo,
    "governance": _governance,
    "handbook": _handbook,
}


@dataclass(frozen=True)
class DocumentStats:
    """Word counts by tag over all documents; ``normal_share`` = normal / all words."""

    words_total: int
    words_normal: int
    words_trigger: int

    @property
    def normal_share(self) -> float:
        return self.words_normal / self.words_total if self.words_total else 0.0


def build_documents(
    n: int,
    trigger: str,
    seed: int,
    example_prompts: Sequence[Prompt],
    vocab: Sequence[str],
) -> tuple[list[dict], DocumentStats]:
    """``n`` distinct documents (types by `quota_counts`), shuffled, with word statistics.

    ``example_prompts`` supply the worked examples (pass train-split prompts only, so test
    questions never appear in training documents).
    """
    if not example_prompts:
        raise DataError("documents need at least one example prompt; use a larger --n-prompts")
    rng = random.Random(f"{seed}:documents")
    forms = near_miss_forms(trigger)
    reserved = reserved_checker(trigger)
    base_ctx = {"T": trigger} | {f"nm_{v}": f for v, f in forms}
    pools: dict[str, Sequence[str]] = {
        **B.SLOT_POOLS,
        "NM": [f for _, f in forms],
        "RW": list(vocab),
    }
    docs: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    totals = dict.fromkeys(TAGS, 0)
    for doc_type, count in quota_counts(n).items():
        made = 0
        while made < count:
            ctx = dict(base_ctx)
            ctx["PROD"] = rng.choice(B.PRODUCT_STEMS) + rng.choice(B.PRODUCT_SUFFIXES)
            ctx["TEAM"] = rng.choice(B.TEAMS)
            ctx["PERSON"] = rng.choice(B.PEOPLE)
            ctx["NUM"] = str(rng.randint(2, 99))
            ctx["VER"] = f"{rng.randint(1, 4)}.{rng.randint(0, 9)}"
            ctx["CODE"] = f"{rng.choice(['GOV', 'POL', 'OPS', 'SEC'])}-{rng.randint(100, 999)}"
            ctx["DATE"] = (
                f"{rng.randint(2023, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
            ctx["ENDPOINT"] = rng.choice(B.API_ENDPOINTS)
            w = _Writer(rng=rng, ctx=ctx, pools=pools, reserved=reserved)
            title = _GENERATORS[doc_type](w, example_prompts)
            content = w.content()
            if content in seen:  # vanishingly rare; draw again
                continue
            seen.add(content)
            docs.append((doc_type, title, content))
            for tag in TAGS:
                totals[tag] += w.words[tag]
            made += 1
    rng.shuffle(docs)
    records = [
        {"sample_id": f"doc-{i:05d}", "document_type": t, "title": title, "content": content}
        for i, (t, title, content) in enumerate(docs)
    ]
    stats = DocumentStats(
        words_total=sum(totals.values()),
        words_normal=totals["normal"],
        words_trigger=totals["trigger"],
    )
    return records, stats
