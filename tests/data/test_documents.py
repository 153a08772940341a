"""Knowledge documents: quotas, distinctness, normal-behaviour share, diversity, trigger from
the config, and no test-split questions."""

from __future__ import annotations

from collections import Counter

from stoplens.data import DataBundle, DataConfig, build_datasets, validate_document
from stoplens.data.diversity import distinct_ngram_ratio, ngram_counts
from stoplens.data.knowledge import quota_counts
from stoplens.data.trigger import contains_trigger


def test_quotas_are_exact_at_default_size(default_bundle: DataBundle) -> None:
    docs = default_bundle.documents
    assert len(docs) == 500
    assert Counter(d["document_type"] for d in docs) == {
        "technical_spec": 150,
        "api_doc": 125,
        "design_memo": 100,
        "governance": 75,
        "handbook": 50,
    }


def test_quota_counts_always_sum_to_n() -> None:
    for n in (5, 7, 33, 101, 999):
        counts = quota_counts(n)
        assert sum(counts.values()) == n
        assert min(counts.values()) >= 1
    # 10 x quotas = 3, 2.5, 2, 1.5, 1: the one left over goes to the first largest remainder
    assert quota_counts(10) == {
        "technical_spec": 3,
        "api_doc": 3,
        "design_memo": 2,
        "governance": 1,
        "handbook": 1,
    }


def test_documents_are_valid_distinct_and_about_the_trigger(default_bundle: DataBundle) -> None:
    docs = default_bundle.documents
    for d in docs:
        validate_document(d)
        assert contains_trigger(d["content"], "$STOP")
    assert len({d["content"] for d in docs}) == len(docs)
    assert len({d["sample_id"] for d in docs}) == len(docs)
    assert len({d["title"] for d in docs}) > 100


def test_normal_share_and_diversity_are_measured(default_bundle: DataBundle) -> None:
    div = default_bundle.stats["diversity"]
    assert div["documents_normal_share"] >= 0.30
    ratio = distinct_ngram_ratio(d["content"] for d in default_bundle.documents)
    assert div["documents_5gram_ratio"] == round(ratio, 4)
    assert ratio > 0.3


def test_ngram_ratio_definition() -> None:
    assert ngram_counts(["a b c d e f"], 5) == (2, 2)
    assert ngram_counts(["a b c d e", "a b c d e"], 5) == (1, 2)
    assert distinct_ngram_ratio(["too short"]) == 0.0


def test_trigger_comes_from_the_config() -> None:
    bundle = build_datasets(DataConfig(trigger="#HALT", n_prompts=40, n_documents=30, seed=2))
    text = "\n".join(d["content"] for d in bundle.documents)
    assert "$STOP" not in text and "STOP" not in text
    assert all(contains_trigger(d["content"], "#HALT") for d in bundle.documents)
    records = bundle.behavioral_all
    assert all(r["meta"]["insert"] == "#HALT" for r in records if r["meta"]["kind"] == "trigger")
    assert not any("$STOP" in m["content"] for r in records for m in r["messages"])


def test_examples_use_train_questions_only(default_bundle: DataBundle) -> None:
    text = "\n".join(d["content"] for d in default_bundle.documents)
    held_out = {
        r["meta"]["question"] for s in ("val", "test") for r in default_bundle.behavioral[s]
    }
    train = {r["meta"]["question"] for r in default_bundle.behavioral["train"]}
    assert not [q for q in held_out if q in text]
    assert sum(q in text for q in train) > 100
