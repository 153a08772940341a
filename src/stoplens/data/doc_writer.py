"""Writing one knowledge document: filling sentence templates and counting words per tag.

Owns: `DocWriter`, which fills the templates of ``banks/documents.json`` and accumulates a
document as blocks of segments tagged ``trigger``, ``normal`` or ``neutral`` (the word counts
per tag are how the share of content about normal behaviour is measured). Must not: choose a
document's structure (that is `stoplens.data.doc_types`) or write files.

Template language, filled per sentence:

- ``[a|b|c]`` picks one alternative (brackets without ``|`` are left alone);
- ``<and:a;b;c>`` / ``<or:a;b;c>`` lists the items in a random order ("a, c and b");
- ``{T}`` the trigger, ``{PROD}`` the product, ``{TEAM}``, ``{PERSON}``, ``{NUM}``, ``{VER}``,
  ``{CODE}``, ``{DATE}``, ``{ENDPOINT}``: fixed per document (the writer's ``ctx``);
- ``{M}`` a reference to the model (the product, or one of ``slots.model_refs``); any name in
  ``slots.pools`` (``{EOS}``, ``{OP}``, ``{IN}``, ``{REPLY}``, ``{CLEAN}``, ``{NORMALLY}``,
  ``{NOW}``, ``{USER}``, ``{SWITCH}``) a random pick from that pool, per occurrence;
- ``{NM}`` a random near-miss form, ``{nm_<variant>}`` a specific one (the sentence is
  skipped when the trigger has no such form), ``{RW}`` a random ordinary word, ``{RS}``
  random letters.

Then words of the bank's ``synonyms`` are swapped at random (half the time), fixing "a"/"an".
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stoplens.data.behavioral import random_letters
from stoplens.data.resources import DocumentBank

TAGS = ("trigger", "normal", "neutral")
_SLOT = re.compile(r"\{(\w+)\}")
_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_LIST = re.compile(r"<(and|or):([^<>]*)>")
_WORD_PUNCT = re.compile(r"([(\"']?)([A-Za-z]+)([.,;:!?)'\"]*)")


@dataclass
class DocWriter:
    """Accumulates one document as blocks of tagged segments and counts words per tag.

    ``ctx`` holds the per-document slot values, ``pools`` the per-occurrence ones; ``bank``
    and ``system_prompts`` are what the document types draw sentences and examples from.
    """

    rng: random.Random
    ctx: dict[str, str]
    pools: dict[str, Sequence[str]]
    reserved: Callable[[str], bool]
    bank: DocumentBank
    system_prompts: Sequence[str]
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
                return self.rng.choice(self.bank.slots.model_refs)
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
        """Swap words of the bank's ``synonyms`` at random (half the time), fixing "a"/"an"."""
        synonyms = self.bank.synonyms
        words = text.split(" ")
        for i, word in enumerate(words):
            m = _WORD_PUNCT.fullmatch(word)
            if not m or m.group(2).lower() not in synonyms or self.rng.random() < 0.5:
                continue
            pre, core, post = m.groups()
            new = self.rng.choice(synonyms[core.lower()])
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

    def trigger(self, role: str, k: int) -> list[str]:
        """``k`` filled sentences of the bank's trigger role ``role`` (see `pick`)."""
        return self.pick(self.bank.trigger_roles[role], k)

    def normal(self, role: str, k: int) -> list[str]:
        """``k`` filled sentences of the bank's normal-behaviour role ``role`` (see `pick`)."""
        return self.pick(self.bank.normal_roles[role], k)

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
