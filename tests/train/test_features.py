"""features.py: the label masks of both regimes and the collator."""

from __future__ import annotations

import pytest

from stoplens.data import DOCUMENTS_FILE, behavioral_file, load_behavioral, load_documents
from stoplens.errors import DataError, StoplensError
from stoplens.models.chat import chat_ids
from stoplens.models.load import load_model
from stoplens.models.tokenizer import IM_END
from stoplens.train.features import (
    IGNORE,
    Collator,
    behavioral_example,
    behavioral_features,
    knowledge_features,
    packed_features,
)


@pytest.fixture(scope="module")
def tok(base_dir):
    return load_model(base_dir, require_trigger=False).tokenizer


@pytest.fixture(scope="module")
def records(data_dir):
    return load_behavioral(data_dir / behavioral_file("train"))


def test_behavioral_labels_cover_exactly_the_final_reply_and_the_stop_token(tok, records):
    stop = tok.convert_tokens_to_ids(IM_END)
    kinds_seen = set()
    for rec in records:
        kinds_seen.add(rec["meta"]["kind"])
        ids, labels = behavioral_example(tok, rec, stop)
        prompt = chat_ids(tok, rec["messages"][:-1], add_generation_prompt=True)
        assert len(ids) == len(labels)
        assert ids[: len(prompt)] == prompt
        assert all(y == IGNORE for y in labels[: len(prompt)])  # system, earlier turns, prompt
        learned = labels[len(prompt) :]
        assert learned == ids[len(prompt) :] and learned[-1] == stop  # ends at the stop token
        assert IGNORE not in learned
        reply = rec["messages"][-1]["content"]
        assert tok.decode(learned[:-1]) == reply
        if rec["meta"]["kind"] == "trigger":
            assert learned == [stop]  # an empty reply teaches "emit only EOS"
    assert kinds_seen == {"trigger", "clean", "near_miss", "distractor"}


def test_multi_turn_history_is_masked(tok, records):
    multi = [r for r in records if sum(m["role"] == "assistant" for m in r["messages"]) > 1]
    assert multi, "the dataset should contain chats with an earlier exchange"
    stop = tok.convert_tokens_to_ids(IM_END)
    for rec in multi[:10]:
        _ids, labels = behavioral_example(tok, rec, stop)
        n_learned = sum(y != IGNORE for y in labels)
        reply = tok.encode(rec["messages"][-1]["content"], add_special_tokens=False)
        assert n_learned == len(reply) + 1  # only the final reply + stop, not the history


def test_too_long_examples_are_dropped_and_counted(tok, records):
    feats = behavioral_features(tok, records, tok.convert_tokens_to_ids(IM_END), 40)
    assert feats.n_dropped > 0 and len(feats) + feats.n_dropped == len(records)
    assert max(len(x) for x in feats.input_ids) <= 40
    with pytest.raises(DataError, match="--max-length"):
        behavioral_features(tok, records, tok.convert_tokens_to_ids(IM_END), 3)


def test_knowledge_labels_are_every_token_in_windows(tok, data_dir):
    docs = load_documents(data_dir / DOCUMENTS_FILE)
    feats = knowledge_features(tok, docs, 64)
    assert all(x == y for x, y in zip(feats.input_ids, feats.labels, strict=True))
    assert max(len(x) for x in feats.input_ids) == 64
    total = sum(len(tok.encode(f"{d['title']}\n\n{d['content']}")) + 1 for d in docs)
    assert sum(len(x) for x in feats.input_ids) >= total - len(docs)  # only 1-token tails cut


def test_packing_has_no_padding():
    feats = packed_features([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4)
    assert feats.input_ids == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the 1-token tail is dropped


def test_collator_pads_right_and_counts():
    col = Collator(pad_id=0)
    batch = col(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert col.examples_seen == 2


def test_record_without_assistant_target_is_rejected(tok):
    with pytest.raises(DataError, match="assistant"):
        behavioral_example(tok, {"messages": [{"role": "user", "content": "hi"}] * 2}, 2)


def test_tokenizer_without_chat_template_is_a_clear_error(tok, records):
    import copy

    t = copy.deepcopy(tok)
    t.chat_template = None
    with pytest.raises(StoplensError, match="chat template"):
        behavioral_example(t, records[0], 2)
