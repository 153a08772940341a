"""Diversity figures for generated text.

Owns: the distinct word n-gram ratio reported in the summary and manifest. Must not: know
about records or files.
"""

from __future__ import annotations

from collections.abc import Iterable


def ngram_counts(texts: Iterable[str], n: int = 5) -> tuple[int, int]:
    """``(distinct, total)`` word ``n``-grams over ``texts`` (lower-cased, whitespace split;
    n-grams never span two texts)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = text.lower().split()
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i : i + n]))
            total += 1
    return len(seen), total


def distinct_ngram_ratio(texts: Iterable[str], n: int = 5) -> float:
    """Distinct word ``n``-grams / total word ``n``-grams (0.0 when there are none)."""
    distinct, total = ngram_counts(texts, n)
    return distinct / total if total else 0.0
