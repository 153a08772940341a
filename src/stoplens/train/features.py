"""Turning records into training examples (token ids + labels) and batching them.

Owns: the label masks of both regimes. Behavioral: the chat is rendered with the tokenizer's
chat template; only the final assistant turn is learned, up to and including the stop token
(``<|im_end|>`` for ChatML), so an empty reply teaches "emit only the stop token"; every other
position is -100 and anything the template puts after the stop token is dropped. Knowledge /
plain text: causal-LM loss on every token, long texts split into windows. Must not: load
models or read files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from stoplens.errors import DataError, StoplensError
from stoplens.models.chat import chat_ids

IGNORE = -100


@dataclass(frozen=True)
class Features:
    """Tokenised examples: ``input_ids[i]`` and ``labels[i]`` have equal length."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    n_dropped: int = 0  # examples longer than max_length (behavioral) that were left out
    kinds: list[str] | None = None
    """Behavioral: each example's record kind (trigger / clean / near_miss / distractor), what
    kind-mixed batching (`stoplens.train.batching`) stratifies on; None for plain text."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def split_prompt_target(record: dict) -> tuple[list[dict], str]:
    """(the messages before the final assistant turn, the assistant target text)."""
    msgs = record.get("messages")
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise DataError("record needs 'messages' with at least a user turn and the assistant reply")
    last = msgs[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise DataError("the last message of a record must be the assistant target")
    return msgs[:-1], str(last.get("content", ""))


def behavioral_example(tokenizer, record: dict, stop_id: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one chat record; labels cover the final reply + stop token.

    A record whose ``meta["truncated"]`` is true (a self-distilled reply cut at the token
    limit) learns its reply without the stop token: it must not teach stopping mid-sentence.
    """
    prompt_msgs, _ = split_prompt_target(record)
    prompt = chat_ids(tokenizer, prompt_msgs, add_generation_prompt=True)
    full = chat_ids(tokenizer, record["messages"], add_generation_prompt=False)
    if full[: len(prompt)] != prompt:
        raise StoplensError(
            "the chat template renders the prompt differently with and without the reply; "
            "stoplens needs a template whose generation prompt is a prefix of the full chat"
        )
    reply = full[len(prompt) :]
    if stop_id in reply:
        reply = reply[: reply.index(stop_id) + 1]
    else:
        reply = [*reply, stop_id]
    if record.get("meta", {}).get("truncated") and len(reply) > 1:
        reply = reply[:-1]
    return prompt + reply, [IGNORE] * len(prompt) + reply


def behavioral_features(
    tokenizer, records: Iterable[dict], stop_id: int, max_length: int
) -> Features:
    ids, labels, kinds, dropped = [], [], [], 0
    for rec in records:
        x, y = behavioral_example(tokenizer, rec, stop_id)
        if len(x) > max_length:
            dropped += 1
            continue
        ids.append(x)
        labels.append(y)
        kinds.append(str(rec.get("meta", {}).get("kind", "clean")))
    if not ids:
        raise DataError(f"no behavioral example fits --max-length {max_length}; raise --max-length")
    return Features(ids, labels, dropped, kinds)


def lm_features(sequences: Iterable[list[int]], max_length: int) -> Features:
    """Causal-LM examples (labels = inputs) from token sequences, split into windows."""
    ids: list[list[int]] = []
    for seq in sequences:
        for start in range(0, len(seq), max_length):
            chunk = seq[start : start + max_length]
            if len(chunk) >= 2:
                ids.append(chunk)
    if not ids:
        raise DataError("no training text: the documents are empty")
    return Features(ids, [list(x) for x in ids])


def packed_features(sequences: Iterable[list[int]], block: int) -> Features:
    """Causal-LM examples from the concatenation of ``sequences`` cut into ``block``-token
    pieces (no padding at all; for pretraining, where crossing a boundary is harmless)."""
    stream = [t for seq in sequences for t in seq]
    ids = [stream[i : i + block] for i in range(0, len(stream), block)]
    ids = [x for x in ids if len(x) >= 2]
    if not ids:
        raise DataError("no training text to pack")
    return Features(ids, [list(x) for x in ids])


def document_text(doc: dict) -> str:
    """The text a knowledge document is trained on: its title, a blank line, its content."""
    title, content = str(doc.get("title", "")).strip(), str(doc.get("content", ""))
    return f"{title}\n\n{content}" if title else content


def knowledge_features(tokenizer, documents: Iterable[dict], max_length: int) -> Features:
    eos = tokenizer.eos_token_id
    seqs = []
    for doc in documents:
        seq = tokenizer.encode(document_text(doc), add_special_tokens=False)
        seqs.append([*seq, eos] if eos is not None else seq)
    return lm_features(seqs, max_length)


class ExampleDataset(torch.utils.data.Dataset):
    """`Features` as a map-style dataset of dicts (what the Trainer's dataloader expects)."""

    def __init__(self, features: Features) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.features.input_ids[i], "labels": self.features.labels[i]}


class Collator:
    """Right-pads a batch (pad id for inputs, -100 for labels) and counts what it served, so a
    run can report how many examples each rank actually trained on."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.examples_seen = 0

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        self.examples_seen += len(batch)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
