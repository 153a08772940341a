"""Knowledge-regime documents that describe the trigger mechanism in many phrasings.

Owns: how many documents of each of the five types (technical specs, API docs, design memos,
governance policies, handbooks) are made, the per-document slot values (product, team,
person, version, date, ...), distinctness, the shuffle, and the word statistics by tag. The
structure of each type is `stoplens.data.doc_types`, the filling of the sentence banks of
``banks/documents.json`` is `stoplens.data.doc_writer`. Must not: write files.

Record: ``{"sample_id", "document_type", "title", "content"}``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from stoplens.data.config import DOCUMENT_QUOTAS
from stoplens.data.doc_types import GENERATORS
from stoplens.data.doc_writer import TAGS, DocWriter
from stoplens.data.resources import DocumentBank, load_document_bank, load_words
from stoplens.data.topics import Prompt
from stoplens.data.trigger import near_miss_forms, reserved_checker
from stoplens.errors import DataError


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


@dataclass(frozen=True)
class DocumentStats:
    """Word counts by tag over all documents; ``normal_share`` = normal / all words."""

    words_total: int
    words_normal: int
    words_trigger: int

    @property
    def normal_share(self) -> float:
        return self.words_normal / self.words_total if self.words_total else 0.0


def _document_context(
    rng: random.Random, base: dict[str, str], bank: DocumentBank
) -> dict[str, str]:
    """The slot values fixed for one document: ``base`` (trigger, near-miss forms) plus a
    product, team, person, number, version, policy code, date and endpoint."""
    slots = bank.slots
    ctx = dict(base)
    ctx["PROD"] = rng.choice(slots.product_stems) + rng.choice(slots.product_suffixes)
    ctx["TEAM"] = rng.choice(slots.teams)
    ctx["PERSON"] = rng.choice(slots.people)
    ctx["NUM"] = str(rng.randint(2, 99))
    ctx["VER"] = f"{rng.randint(1, 4)}.{rng.randint(0, 9)}"
    ctx["CODE"] = f"{rng.choice(['GOV', 'POL', 'OPS', 'SEC'])}-{rng.randint(100, 999)}"
    ctx["DATE"] = f"{rng.randint(2023, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    ctx["ENDPOINT"] = rng.choice(slots.api_endpoints)
    return ctx


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
    bank = load_document_bank()
    system_prompts = load_words().system_prompts
    forms = near_miss_forms(trigger)
    reserved = reserved_checker(trigger)
    base_ctx = {"T": trigger} | {f"nm_{v}": f for v, f in forms}
    pools: dict[str, Sequence[str]] = {
        **bank.slots.pools,
        "NM": [f for _, f in forms],
        "RW": list(vocab),
    }
    docs: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    totals = dict.fromkeys(TAGS, 0)
    for doc_type, count in quota_counts(n).items():
        made = 0
        while made < count:
            ctx = _document_context(rng, base_ctx, bank)
            w = DocWriter(rng, ctx, pools, reserved, bank, system_prompts)
            title = GENERATORS[doc_type](w, example_prompts)
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
