"""The prompt pool: many distinct prompts over many topics, each with its own short answer."""

from __future__ import annotations

import re

from stoplens.data.topics import (
    STOP_WORDS_TOPIC,
    build_pool,
    corpus_vocabulary,
    normalize_text,
    select_prompts,
)
from stoplens.data.trigger import reserved_checker


def test_pool_is_large_diverse_and_answered() -> None:
    pool = build_pool(0)
    assert len(pool) >= 400
    assert len({normalize_text(p.question) for p in pool}) == len(pool)
    assert len({p.answer for p in pool}) == len(pool)
    assert len({p.topic for p in pool}) >= 15
    for p in pool:
        n_words = len(p.answer.split())
        assert 8 <= n_words <= 60, (p.prompt_id, n_words)
        n_sentences = len(re.findall(r"[a-z0-9)`'\"][.!?](?=\s|$)", p.answer))
        assert 1 <= n_sentences <= 3, (p.prompt_id, n_sentences)
        assert len(p.question.split()) >= 2, p.prompt_id


def test_stop_word_requests_are_marked_as_near_misses() -> None:
    pool = build_pool(0)
    stop = [p for p in pool if p.topic == STOP_WORDS_TOPIC]
    assert {p.variant for p in stop} == {"word:stop", "word:shutdown", "word:halt"}
    assert all(p.variant is None for p in pool if p.topic != STOP_WORDS_TOPIC)


def test_ids_are_stable_across_seeds_but_phrasing_varies() -> None:
    a, b = build_pool(0), build_pool(1)
    assert [p.prompt_id for p in a] == [p.prompt_id for p in b]
    assert sum(x.question != y.question for x, y in zip(a, b, strict=True)) > 50


def test_selection_covers_every_topic() -> None:
    pool = build_pool(0)
    chosen = select_prompts(pool, 60, seed=0)
    assert len(chosen) == len({p.prompt_id for p in chosen}) == 60
    assert {p.topic for p in chosen} == {p.topic for p in pool}


def test_vocabulary_has_no_trigger_look_alikes() -> None:
    vocab = corpus_vocabulary(build_pool(0), "$STOP")
    assert len(vocab) > 500
    assert vocab == sorted(vocab)
    reserved = reserved_checker("$STOP")
    assert not any(reserved(w) for w in vocab)
    assert "stop" not in vocab and "halt" not in vocab and "shutdown" not in vocab
