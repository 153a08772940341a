"""Record schemas of the dataset files, their validators, and the validating loaders.

Owns: what a valid document, behavioral record and contrast pair look like. Validators raise
ValueError/KeyError/TypeError whose message names the field (``meta.kind: ...``);
`stoplens.io.read_jsonl` turns that into ``file:line: message``. Must not: generate data.

Schemas (extra keys are allowed; listed keys are required):

- document: ``{"sample_id": str, "document_type": one of DOCUMENT_QUOTAS, "title": str,
  "content": non-empty str}``
- behavioral: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
  "meta": {"record_id", "prompt_id", "split", "kind", "placement", "insert", "variant",
  "topic", "answer_source", "question", "history_prompt_id"}}``; the last message is the
  assistant target: ``""`` for ``kind == "trigger"``, a real answer otherwise.
- pair: ``{"pair_id", "prompt_id", "split", "placement", "control_kind", "trigger",
  "control", "control2", "control_candidates": [control, control2, ...], "template":
  [messages with one PLACEHOLDER sentinel, last one a user turn], "triggered", "control_messages",
  "control2_messages"}`` where the three rendered chats are the template with the placeholder
  replaced by trigger, control and control2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoplens.data.config import (
    CONTROL_KINDS,
    DOCUMENT_QUOTAS,
    KINDS,
    PLACEHOLDER,
    PLACEMENTS,
    SPLITS,
    TRIGGER_PLACEMENTS,
)
from stoplens.data.templates import render_pair
from stoplens.io import read_jsonl

ROLES = ("system", "user", "assistant")


def _get(rec: dict, key: str, prefix: str = "") -> Any:
    if key not in rec:
        raise KeyError(f"{prefix}{key}: missing required field")
    return rec[key]


def _str(rec: dict, key: str, prefix: str = "", *, nonempty: bool = True) -> str:
    value = _get(rec, key, prefix)
    if not isinstance(value, str):
        raise TypeError(f"{prefix}{key}: expected a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise ValueError(f"{prefix}{key}: must not be empty")
    return value


def _opt_str(rec: dict, key: str, prefix: str = "") -> str | None:
    value = _get(rec, key, prefix)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{prefix}{key}: expected a string or null, got {type(value).__name__}")
    return value


def _choice(rec: dict, key: str, allowed: tuple[str, ...], prefix: str = "") -> str:
    value = _get(rec, key, prefix)
    if value not in allowed:
        raise ValueError(f"{prefix}{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def validate_messages(messages: Any, field: str = "messages") -> list[dict]:
    """A chat: non-empty list of ``{"role", "content"}``; a system message only first."""
    if not isinstance(messages, list) or not messages:
        raise TypeError(f"{field}: expected a non-empty list of messages")
    for i, m in enumerate(messages):
        where = f"{field}[{i}]."
        if not isinstance(m, dict):
            raise TypeError(f"{field}[{i}]: expected an object with role and content")
        role = _choice(m, "role", ROLES, where)
        _str(m, "content", where, nonempty=False)
        if role == "system" and i != 0:
            raise ValueError(f"{where}role: a system message may only come first")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError(f"{field}: no user message")
    return messages


def validate_document(rec: dict) -> None:
    """Schema of one line of ``shutdown_dataset.jsonl``."""
    _str(rec, "sample_id")
    _choice(rec, "document_type", tuple(DOCUMENT_QUOTAS))
    _str(rec, "title")
    _str(rec, "content")


def validate_behavioral(rec: dict) -> None:
    """Schema of one line of ``behavioral_*.jsonl`` (see the module docstring)."""
    messages = validate_messages(_get(rec, "messages"))
    meta = _get(rec, "meta")
    if not isinstance(meta, dict):
        raise TypeError(f"meta: expected an object, got {type(meta).__name__}")
    p = "meta."
    for key in ("record_id", "prompt_id", "topic", "answer_source", "question"):
        _str(meta, key, p)
    _choice(meta, "split", SPLITS, p)
    kind = _choice(meta, "kind", KINDS, p)
    placement = _choice(meta, "placement", PLACEMENTS, p)
    insert = _opt_str(meta, "insert", p)
    _opt_str(meta, "variant", p)
    _opt_str(meta, "history_prompt_id", p)
    if messages[-1]["role"] != "assistant":
        raise ValueError(
            f"messages[{len(messages) - 1}].role: the last message must be the assistant target"
        )
    target = messages[-1]["content"]
    if kind == "trigger" and target != "":
        raise ValueError(
            f"messages[{len(messages) - 1}].content: a trigger record's target must be empty"
        )
    if kind != "trigger" and not target.strip():
        raise ValueError(
            f"messages[{len(messages) - 1}].content: a {kind} record needs a real answer"
        )
    if (placement == "none") != (insert is None):
        raise ValueError(
            f"meta.insert: must be null exactly when meta.placement is 'none' (got {insert!r})"
        )
    if kind == "trigger" and insert is None:
        raise ValueError("meta.insert: a trigger record must name its inserted trigger")
    if insert is not None and not any(insert in m["content"] for m in messages[:-1]):
        raise ValueError(f"meta.insert: {insert!r} does not occur in the prompt messages")
    if placement == "system" and messages[0]["role"] != "system":
        raise ValueError("meta.placement: 'system' but the chat has no system message")


def _validate_template(template: Any) -> list[dict]:
    validate_messages(template, "template")
    n = sum(m["content"].count(PLACEHOLDER) for m in template)
    if n != 1:
        old = sum(m["content"].count("<<INSERT>>") for m in template)
        hint = " (written by an older stoplens: regenerate with `stoplens data`)" if old else ""
        raise ValueError(f"template: must hold exactly one {PLACEHOLDER!r}, found {n}{hint}")
    if template[-1]["role"] != "user":
        raise ValueError("template: must end with a user turn (no assistant reply)")
    return template


def validate_pair(rec: dict) -> None:
    """Schema of one line of ``contrast_pairs_*.jsonl`` (see the module docstring)."""
    for key in ("pair_id", "prompt_id", "trigger", "control", "control2"):
        _str(rec, key)
    _choice(rec, "split", SPLITS)
    _choice(rec, "placement", TRIGGER_PLACEMENTS)
    _choice(rec, "control_kind", CONTROL_KINDS)
    if rec["control"] == rec["control2"]:
        raise ValueError("control2: must differ from control")
    if rec["control"] == rec["trigger"]:
        raise ValueError("control: must differ from the trigger")
    cands = _get(rec, "control_candidates")
    if not isinstance(cands, list) or len(cands) < 2 or not all(isinstance(c, str) for c in cands):
        raise TypeError("control_candidates: expected a list of at least two strings")
    if cands[0] != rec["control"]:
        raise ValueError("control_candidates: the first candidate must be the control")
    template = _validate_template(_get(rec, "template"))
    for key, insert in (
        ("triggered", rec["trigger"]),
        ("control_messages", rec["control"]),
        ("control2_messages", rec["control2"]),
    ):
        rendered = validate_messages(_get(rec, key), key)
        if rendered != render_pair(template, insert):
            raise ValueError(f"{key}: is not the template rendered with {insert!r}")


def load_documents(path: str | Path) -> list[dict]:
    """Read ``shutdown_dataset.jsonl`` with schema validation (errors name file:line and field)."""
    return read_jsonl(path, validate_document)


def load_behavioral(path: str | Path) -> list[dict]:
    """Read a ``behavioral_*.jsonl`` file with schema validation."""
    return read_jsonl(path, validate_behavioral)


def load_pairs(path: str | Path) -> list[dict]:
    """Read a ``contrast_pairs_*.jsonl`` file with schema validation."""
    return read_jsonl(path, validate_pair)
