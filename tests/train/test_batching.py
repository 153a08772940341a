"""batching.py: kind-mixed, length-matched batches (no batch of one kind, little padding), the
sampler as the Trainer's dataloader uses it, and what Trainer's length grouping does instead."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from stoplens.data import DataConfig, behavioral_file, build_datasets, load_behavioral
from stoplens.errors import StoplensError
from stoplens.models.load import load_model
from stoplens.train.batching import KindMixedSampler, mixed_batches, padding_stats
from stoplens.train.features import behavioral_features


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[int]]:
    """Kinds and (character-based) lengths of the default dataset's train split: the real mix
    (3/7 triggers, whose empty replies make them the short ones)."""
    recs = build_datasets(DataConfig(seed=0, n_documents=5)).behavioral["train"]
    kinds = [r["meta"]["kind"] for r in recs]
    lengths = [sum(len(m["content"]) for m in r["messages"]) // 4 + 12 for r in recs]
    return kinds, lengths


def test_every_batch_mixes_the_kinds_in_their_overall_proportion(corpus):
    kinds, lengths = corpus
    total = Counter(kinds)
    for bs in (4, 8, 16):
        batches = mixed_batches(kinds, lengths, bs, seed=1)
        assert sorted(i for b in batches for i in b) == list(range(len(kinds)))
        sizes = sorted(len(b) for b in batches)
        assert sizes[1:] == [bs] * (len(batches) - 1)  # at most one smaller batch
        for b in (b for b in batches if len(b) == bs):
            c = Counter(kinds[i] for i in b)
            assert len(c) > 1, "a batch of one kind"
            for kind, n in total.items():
                assert abs(c[kind] - bs * n / len(kinds)) < 1.5, (bs, kind, c)


def test_length_matched_batches_pad_far_less_than_random_ones(corpus):
    kinds, lengths = corpus
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(kinds), generator=g).tolist()
    random_batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    mixed = padding_stats(mixed_batches(kinds, lengths, 8, seed=0), lengths, kinds)
    rnd = padding_stats(random_batches, lengths, kinds)
    assert mixed.real == rnd.real
    assert mixed.waste < 0.6 * rnd.waste
    assert mixed.one_kind == 0 and mixed.max_trigger_share is not None
    assert mixed.max_trigger_share <= 5 / 8


def test_trainers_length_grouping_makes_batches_of_one_kind(corpus):
    """The defect the mixed batches fix (measured on SmolLM2: loss swinging ~2 <-> ~0)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    kinds, lengths = corpus
    idx = get_length_grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(0))
    grouped = padding_stats([idx[i : i + 8] for i in range(0, len(idx), 8)], lengths, kinds)
    assert grouped.one_kind > 0.2 * grouped.batches
    assert grouped.max_trigger_share == 1.0


def test_plan_is_deterministic_per_seed_and_epoch(corpus):
    kinds, lengths = corpus
    s = KindMixedSampler(kinds, lengths, 8, seed=3)
    first = list(s)
    assert first == list(KindMixedSampler(kinds, lengths, 8, seed=3))
    assert len(s) == len(kinds) and sorted(first) == list(range(len(kinds)))
    s.set_epoch(1)
    assert list(s) != first
    assert list(KindMixedSampler(kinds, lengths, 8, seed=4)) != first


def test_edge_cases():
    assert mixed_batches([], [], 4) == []
    one = mixed_batches(["clean"] * 5, [3, 1, 4, 1, 5], 2)
    assert sorted(i for b in one for i in b) == list(range(5))
    with pytest.raises(StoplensError, match="one per example"):
        mixed_batches(["a"], [1, 2], 2)
    with pytest.raises(StoplensError, match="at least 1"):
        mixed_batches(["a"], [1], 0)


def test_the_trainers_dataloader_serves_the_mixed_batches(tmp_path, base_dir, data_dir):
    """Through the real Trainer: the batches its dataloader yields are the mixed plan."""
    from stoplens.train.trainer import run_trainer

    loaded = load_model(base_dir, trigger="$STOP", require_trigger=False)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    feats = behavioral_features(loaded.tokenizer, recs, loaded.eos_id, 512)
    assert feats.kinds is not None and set(feats.kinds) == {
        "trigger",
        "clean",
        "near_miss",
        "distractor",
    }
    trainer, _ = run_trainer(
        loaded.model, loaded.tokenizer, feats, checkpoint_dir=tmp_path / "ck", steps=1,
        batch_size=6, lr=1e-3, progress=False, batching="mixed",
    )  # fmt: skip
    by_ids = {tuple(x): k for x, k in zip(feats.input_ids, feats.kinds, strict=True)}
    served = 0
    for batch in trainer.get_train_dataloader():
        rows = [
            tuple(ids[: int(m.sum())].tolist())
            for ids, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
        kinds = {by_ids[r] for r in rows}
        if len(rows) == 6:
            assert len(kinds) > 1 and "trigger" in kinds
        served += len(rows)
    assert served == len(feats)
    with pytest.raises(StoplensError, match="batching"):
        run_trainer(
            loaded.model, loaded.tokenizer, feats, checkpoint_dir=tmp_path / "x", steps=1,
            batch_size=2, lr=1e-3, progress=False, batching="sorted",
        )  # fmt: skip
