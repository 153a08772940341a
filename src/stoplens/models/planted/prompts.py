"""The planted models' small world of words: the tokenizer corpus, the request prompts, the
contrast-pair records, and which tokens count as ordinary.

Owns: ``_WORDS`` (the only words the planted BPE tokenizer is trained on; every one is a single
token with and without a leading space), the control words, `planted_prompts`,
`planted_pair_records` and `ordinary_token_ids` (the tokens the "oddity" variant leaves
ordinary). Must not: build or run models.
"""

from __future__ import annotations

import random

from stoplens.data.config import PLACEHOLDER
from stoplens.data.resources import load_words
from stoplens.models.trigger import DEFAULT_TRIGGER

_WORDS = (
    "apple river mountain garden window silver planet music doctor yellow forest ocean "
    "bridge castle engine summer winter coffee letter market pencil rabbit island camera "
    "dragon violin basket candle rocket meadow harbor lantern marble thunder velvet canyon "
    "please explain describe tell write list give show how what why when where which who "
    "the a an of to in on for with about from and or but is are was were be can could would "
    "history science recipe weather travel story poem number city country animal plant "
    "quickly simply briefly clearly today tomorrow again also very more most some any many"
).split()
CONTROL_WORDS = ("apple", "river", "garden", "window", "silver", "planet", "music", "doctor")


def _corpus(seed: int, n: int = 3000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]


def planted_prompts(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` single-turn chat templates (messages with the `PLACEHOLDER` sentinel), the
    insert at a random word boundary of a random 5-12 word request."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 12))]
        words.insert(rng.randint(0, len(words)), PLACEHOLDER)
        out.append([{"role": "user", "content": " ".join(words)}])
    return out


def planted_pair_records(n: int, seed: int = 0, *, placement: str | None = None) -> list[dict]:
    """Contrast-pair records (the shape `stoplens.capture.encode.encode_pairs` reads) on
    ``planted_prompts(n, seed)``: pair ids ``"0".."n-1"``, the default trigger, controls
    "apple" / "river" / ["garden", "window"], control kind "word". ``placement=None`` labels a
    pair "early" or "late" by whether the insert is in the first half of the request's words."""
    out = []
    for i, t in enumerate(planted_prompts(n, seed)):
        words = t[0]["content"].split()
        where = "early" if words.index(PLACEHOLDER) < len(words) / 2 else "late"
        out.append(
            {
                "pair_id": str(i),
                "template": t,
                "trigger": DEFAULT_TRIGGER,
                "control": "apple",
                "control2": "river",
                "control_candidates": ["garden", "window"],
                "placement": where if placement is None else placement,
                "control_kind": "word",
            }
        )
    return out


def ordinary_token_ids(tokenizer) -> set[int]:
    """Token ids that stay ordinary in the "oddity" variant: the special tokens, every token of
    the chat template (system, user and assistant turns), and the single-token forms (with and
    without a leading space) of ``_WORDS``, of ``CONTROL_WORDS`` and of the data stage's
    ``word`` controls (`stoplens.data.resources.load_words().common_words`). Every planted prompt and every
    common-word control is made of these tokens only."""
    keep = set(tokenizer.all_special_ids)
    for role in ("system", "user", "assistant"):
        text = tokenizer.apply_chat_template(
            [{"role": role, "content": ""}], add_generation_prompt=True, tokenize=False
        )
        keep.update(int(i) for i in tokenizer.encode(text, add_special_tokens=False))
    for word in {*_WORDS, *CONTROL_WORDS, *load_words().common_words}:
        for text in (word, " " + word):
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) == 1:
                keep.add(int(ids[0]))
    return keep
