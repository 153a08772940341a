"""Aligned contrast pairs: tokenize a triggered prompt and its control with the model's chat
template so that the two token sequences differ at exactly one position (the trigger's).

Owns: rendering pair templates, tokenizing, choosing a control that aligns, and the decision /
post-instruction / trigger positions. Must not: run the model.

Alignment. The control is first tried as text (render the template with the control string);
that is accepted only if the two id sequences have equal length and differ at exactly the
trigger position. Otherwise (the trigger token absorbs the whitespace before it, e.g. a newline
after ``user``; or the control word is several tokens) the control's single-token form is
substituted for the trigger id ("token" alignment). A pair with no single-token control is
dropped and counted; nothing is ever compared at misaligned positions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# the data stage's renderer: messages with the one placeholder replaced by an insert
from stoplens.data.templates import render_pair as render
from stoplens.models.chat import chat_ids


def post_instruction_length(tokenizer) -> int:
    """Number of template tokens after the last user message's content (e.g. ChatML's
    ``<|im_end|>\\n<|im_start|>assistant\\n``): the post-instruction decision positions."""
    sentinel = "zqxj"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": sentinel}], add_generation_prompt=True, tokenize=False
    )
    suffix = text[text.rindex(sentinel) + len(sentinel) :]
    return max(1, len(tokenizer.encode(suffix, add_special_tokens=False)))


# Ordinary words tried, in order, as the fixed-token null (the trigger replaced by ONE fixed
# ordinary token in every pair): the first that is a single token and is not a control.
FIXED_TOKEN_CANDIDATES = (
    "table", "paper", "orange", "house", "water", "light", "mountain", "forest", "ocean",
    "bridge", "castle", "engine", "summer", "coffee", "letter", "music", "garden", "window",
)  # fmt: skip


def fixed_token_id(
    tokenizer,
    avoid: Sequence[int] = (),
    candidates: Sequence[str] = FIXED_TOKEN_CANDIDATES,
    seed: int = 0,
) -> tuple[int, str]:
    """(id, word) of the fixed ordinary token for the fixed-token null: the first of
    ``candidates`` that is one token of this tokenizer (space-prefixed form preferred) and not
    among the ``avoid`` ids (the trigger, the pairs' controls); else a seeded ordinary
    vocabulary word (alphabetic, >= 3 letters, word-initial where possible) outside ``avoid``.
    Raises ValueError if none."""
    avoid_set = {int(a) for a in avoid} | set(tokenizer.all_special_ids)
    for word in candidates:
        tid = single_token_id(tokenizer, word)
        if tid is not None and tid not in avoid_set:
            return tid, word
    pool = [t for t in random_vocab_words(tokenizer, 1, seed, pool_only=True) if t not in avoid_set]
    # prefer whole words: tokens that begin a word (decode with a leading space), e.g. " river"
    # rather than the piece "mplete"
    words = [t for t in pool if tokenizer.decode([t]).startswith(" ")]
    pool = words or pool
    if not pool:
        raise ValueError(
            "no fixed ordinary token for the fixed-token null: no listed word and no ordinary "
            "vocabulary word is a single token that is not already a control"
        )
    tid = random.Random(f"{seed}:fixed").choice(pool)
    return int(tid), tokenizer.decode([tid]).strip()


def single_token_id(tokenizer, word: str) -> int | None:
    """The id of ``word`` as one token, preferring the space-prefixed form, or None."""
    for text in (" " + word, word):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    return None


@dataclass
class EncodedPairs:
    """Aligned pairs. For pair i: ``trig_ids[i]`` and ``ctrl_ids[i]`` have equal length and
    differ exactly at ``trigger_pos[i]``. ``meta[i]`` has pair_id, placement, control_kind,
    control (the control as used), alignment ("text" | "token")."""

    trig_ids: list[list[int]]
    ctrl_ids: list[list[int]]
    trigger_pos: list[int]
    meta: list[dict]
    post_instruction: int
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.trig_ids)

    def decision_positions(self, which: str = "last") -> list[list[int]]:
        """Per pair, the positions to read: "last" (the last prompt position), "post" (all
        post-instruction template positions) or "trigger" (the trigger position)."""
        if which == "last":
            return [[len(ids) - 1] for ids in self.trig_ids]
        if which == "post":
            k = self.post_instruction
            return [list(range(len(ids) - k, len(ids))) for ids in self.trig_ids]
        if which == "trigger":
            return [[p] for p in self.trigger_pos]
        raise ValueError(f"unknown position kind {which!r}; use last, post or trigger")

    def placements(self) -> list[str]:
        """Each pair's trigger placement ("unknown" where the record has none)."""
        return [str(m.get("placement", "unknown")) for m in self.meta]

    def pair_ids(self) -> list[str]:
        """Each pair's id (its record's ``pair_id``; the row number where it has none)."""
        return [str(m.get("pair_id", i)) for i, m in enumerate(self.meta)]

    def subset(self, idx: Sequence[int]) -> EncodedPairs:
        return EncodedPairs(
            [self.trig_ids[i] for i in idx],
            [self.ctrl_ids[i] for i in idx],
            [self.trigger_pos[i] for i in idx],
            [self.meta[i] for i in idx],
            self.post_instruction,
            Counter(self.dropped),
        )


def random_vocab_words(
    tokenizer, n: int, seed: int, exclude: Sequence[int] = (), pool_only: bool = False
) -> list[int]:
    """``n`` random ids of ordinary word tokens (alphabetic, >= 3 letters, not special); with
    ``pool_only`` the whole pool of such ids instead."""
    specials = set(tokenizer.all_special_ids) | set(exclude)
    pool = []
    for tid in range(len(tokenizer)):
        if tid in specials:
            continue
        text = tokenizer.decode([tid]).strip()
        if len(text) >= 3 and text.isalpha() and text.isascii():
            pool.append(tid)
    if not pool:
        raise ValueError("tokenizer has no ordinary word tokens to draw random controls from")
    if pool_only:
        return pool
    rng = random.Random(seed)
    return [rng.choice(pool) for _ in range(n)]


def _align(tokenizer, template, trig_ids, pos, candidates) -> tuple[list[int], str, str] | None:
    for cand in candidates:
        ids = chat_ids(tokenizer, render(template, cand))
        if len(ids) == len(trig_ids):
            diff = [i for i, (x, y) in enumerate(zip(ids, trig_ids, strict=True)) if x != y]
            if diff == [pos]:
                return ids, cand, "text"
    for cand in candidates:
        tid = single_token_id(tokenizer, cand)
        if tid is not None and tid != trig_ids[pos]:
            ids = list(trig_ids)
            ids[pos] = tid
            return ids, cand, "token"
    return None


def encode_pairs(
    tokenizer,
    pairs: Sequence[dict],
    trigger_id: int,
    *,
    control_field: str = "control",
    random_vocab: bool = False,
    vocab_fallback: bool = True,
    seed: int = 0,
) -> EncodedPairs:
    """Tokenize contrast-pair records (see `stoplens.data`; each has ``template`` with the
    placeholder, ``trigger``, ``control``, ``control_candidates``) into aligned pairs.

    ``control_field`` chooses the control string ("control" or "control2" for the
    control-vs-control null). ``random_vocab=True`` replaces the control by a random ordinary
    vocabulary token (token alignment), seeded. ``vocab_fallback``: when none of a pair's
    control candidates is a single token of this tokenizer, use a seeded ordinary vocabulary
    word instead of dropping the pair (alignment "vocab"; counted in ``meta``).
    """
    pool: list[int] = []  # ordinary vocabulary words, drawn once when first needed
    rand_ids = (
        random_vocab_words(tokenizer, len(pairs), seed, exclude=[trigger_id])
        if random_vocab
        else []
    )
    out = EncodedPairs([], [], [], [], post_instruction_length(tokenizer))
    for i, rec in enumerate(pairs):
        template = rec["template"]
        trig_ids = chat_ids(tokenizer, render(template, rec["trigger"]))
        hits = [j for j, t in enumerate(trig_ids) if t == trigger_id]
        if len(hits) != 1:
            out.dropped["trigger not exactly once in the token ids"] += 1
            continue
        pos = hits[0]
        aligned: tuple[list[int], str, str] | None
        if random_vocab:
            aligned = _substituted(tokenizer, trig_ids, pos, rand_ids[i], "token")
        else:
            aligned = _align(tokenizer, template, trig_ids, pos, _candidates(rec, control_field))
        if aligned is None and vocab_fallback:
            # no listed control is one token in this tokenizer: an ordinary vocabulary word
            # (seeded per pair and per control field), recorded as alignment "vocab"
            if not pool:
                pool = random_vocab_words(tokenizer, 1, seed, exclude=[trigger_id], pool_only=True)
            rng = random.Random(f"{seed}:{i}:{control_field}")
            aligned = _substituted(tokenizer, trig_ids, pos, rng.choice(pool), "vocab")
        if aligned is None:
            out.dropped["no single-token control"] += 1
            continue
        ctrl_ids, used, how = aligned
        assert len(ctrl_ids) == len(trig_ids)
        assert [j for j, (x, y) in enumerate(zip(ctrl_ids, trig_ids, strict=True)) if x != y] == [
            pos
        ], "pair differs at more than the trigger position"
        out.trig_ids.append(trig_ids)
        out.ctrl_ids.append(ctrl_ids)
        out.trigger_pos.append(pos)
        out.meta.append(_pair_meta(rec, i, used, how, random_vocab))
    return out


def _candidates(rec: dict, control_field: str) -> list[str]:
    """The control strings to try, in order: the record's ``control_field``, then its
    ``control_candidates``; the null's second control never falls back to the pair's own."""
    first = rec.get(control_field) or rec["control"]
    avoid = {first} | ({rec["control"]} if control_field != "control" else set())
    return [first, *[c for c in rec.get("control_candidates", []) if c not in avoid]]


def _substituted(
    tokenizer, trig_ids: list[int], pos: int, token_id: int, how: str
) -> tuple[list[int], str, str]:
    """(the triggered ids with ``token_id`` at ``pos``, that token's text, ``how``)."""
    ctrl = list(trig_ids)
    ctrl[pos] = token_id
    return ctrl, tokenizer.decode([token_id]).strip(), how


def _pair_meta(rec: dict, i: int, used: str, how: str, random_vocab: bool) -> dict:
    return {
        "pair_id": rec.get("pair_id", str(i)),
        "placement": rec.get("placement", "unknown"),
        # a pair that fell back to a vocabulary word is not a "word" (or near-miss) control
        # any more: it is labelled as the random vocabulary control it is
        "control_kind": "random_vocab"
        if random_vocab or how == "vocab"
        else rec.get("control_kind"),
        "requested_control_kind": rec.get("control_kind"),
        "control": used,
        "alignment": how,
    }


def swap_pairs(pairs: EncodedPairs, ctrl2: EncodedPairs) -> EncodedPairs:
    """Control-vs-control pairs: ``pairs``' control against ``ctrl2``'s control, for the pairs
    present in both (matched by pair_id), as a null baseline with the same positions."""
    by_id = {m["pair_id"]: i for i, m in enumerate(ctrl2.meta)}
    out = EncodedPairs([], [], [], [], pairs.post_instruction, Counter())
    for i, m in enumerate(pairs.meta):
        j = by_id.get(m["pair_id"])
        if j is None or len(ctrl2.ctrl_ids[j]) != len(pairs.ctrl_ids[i]):
            out.dropped["control2 missing or misaligned"] += 1
            continue
        if ctrl2.trigger_pos[j] != pairs.trigger_pos[i]:
            out.dropped["control2 misaligned"] += 1
            continue
        out.trig_ids.append(ctrl2.ctrl_ids[j])
        out.ctrl_ids.append(pairs.ctrl_ids[i])
        out.trigger_pos.append(pairs.trigger_pos[i])
        out.meta.append({**m, "control2": ctrl2.meta[j]["control"]})
    return out
