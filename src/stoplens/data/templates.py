"""Chat templates with a placeholder, and rendering them with an insert.

Owns: where an inserted string (trigger, near miss, distractor or control) sits in a chat for
each placement, and `render_pair`, which replaces the placeholder. Behavioral records and
contrast pairs are both rendered from these templates, so a pair's triggered and control
chats differ only in the inserted string. Must not: choose which string is inserted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from stoplens.data.config import PLACEHOLDER, TRIGGER_PLACEMENTS
from stoplens.errors import DataError

Message = dict[str, str]

#: Sub-positions inside a user turn; ``later_turn`` puts the insert at one of these too.
_USER_POSITIONS = ("prefix", "suffix", "middle", "own_line")


def _in_user_text(question: str, position: str, rng: random.Random) -> str:
    """``question`` with the placeholder at ``position`` (one of `_USER_POSITIONS`)."""
    if position == "prefix":
        return f"{PLACEHOLDER} {question}"
    if position == "suffix":
        return f"{question} {PLACEHOLDER}"
    if position == "middle":
        words = question.split(" ")
        if len(words) < 2:
            return f"{question} {PLACEHOLDER}"
        k = rng.randint(1, len(words) - 1)
        return " ".join([*words[:k], PLACEHOLDER, *words[k:]])
    if position == "own_line":
        return rng.choice([f"{question}\n{PLACEHOLDER}", f"{PLACEHOLDER}\n{question}"])
    raise ValueError(f"unknown user position {position!r}")


def _system_with_placeholder(system: str, rng: random.Random) -> str:
    return rng.choice(
        [
            f"{system} {PLACEHOLDER}",
            f"{PLACEHOLDER} {system}",
            f"{system}\n{PLACEHOLDER}",
            PLACEHOLDER,
        ]
    )


def build_template(
    question: str,
    placement: str,
    rng: random.Random,
    *,
    system: str | None = None,
    history: tuple[str, str] | None = None,
) -> list[Message]:
    """The chat for ``question`` with `PLACEHOLDER` at ``placement`` (no assistant reply).

    ``system`` is a clean system prompt (required for ``placement="system"``, optional context
    otherwise); ``history`` is an earlier ``(user, assistant)`` exchange (required for
    ``later_turn``, optional context otherwise). ``placement="none"`` gives a chat without a
    placeholder.
    """
    messages: list[Message] = []
    if placement == "system":
        if system is None:
            raise ValueError("placement 'system' needs a system prompt")
        messages.append({"role": "system", "content": _system_with_placeholder(system, rng)})
    elif system is not None:
        messages.append({"role": "system", "content": system})
    if placement == "later_turn" and history is None:
        raise ValueError("placement 'later_turn' needs an earlier exchange")
    if history is not None:
        messages.append({"role": "user", "content": history[0]})
        messages.append({"role": "assistant", "content": history[1]})
    if placement in ("prefix", "suffix", "middle", "own_line"):
        user = _in_user_text(question, placement, rng)
    elif placement == "later_turn":
        user = _in_user_text(question, rng.choice(_USER_POSITIONS), rng)
    elif placement in ("system", "none"):
        user = question
    else:
        raise ValueError(f"unknown placement {placement!r}; choose from {TRIGGER_PLACEMENTS}")
    messages.append({"role": "user", "content": user})
    return messages


def count_placeholders(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(m["content"].count(PLACEHOLDER) for m in messages)


def render_pair(template_messages: Sequence[Mapping[str, str]], insert: str) -> list[Message]:
    """Copy of ``template_messages`` with the one `PLACEHOLDER` replaced by ``insert`` (other
    keys of each message are kept). The one renderer of templates: the data stage, the schema
    check and `stoplens.capture.encode` all render through it.

    Raises `DataError` if the template does not hold exactly one placeholder.
    """
    n = count_placeholders(template_messages)
    if n != 1:
        raise DataError(f"a template must hold exactly one {PLACEHOLDER}, found {n}")
    return [{**m, "content": m["content"].replace(PLACEHOLDER, insert)} for m in template_messages]
