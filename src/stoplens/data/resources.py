"""The data stage's package data: facts, words and document phrasings, kept as JSON files in
``stoplens/data/banks/`` (shipped with the package) and read into typed, frozen objects.

Owns: the shape of those files (the dataclasses below; a file is the JSON form of its
dataclass, lists for tuples and objects for mappings), reading them through
`importlib.resources` (so an installed wheel finds them), and checking every field's type on
load (a malformed file fails at once, naming the field). Must not: choose, randomise or render
anything (that is `topics`, `behavioral`, `pairs` and the document modules), or keep what it
read in a global cache (callers load a bank once per build and pass it down).

Files:

- ``facts.json`` (`FactBank`): the prompt pool's topic knowledge. Table topics hold one row
  per entity and, per question type, question and answer phrasings: ``str.format`` templates
  over the row's fields (plus ``Name``, the row's ``name`` with a capital first letter, and
  ``<field>_lower``); one phrasing of each is picked per seed. QA topics hold hand-written
  ``(key, question, answer)`` items. Answers are short (1-3 sentences) because a tiny model is
  trained on them on CPU.
- ``words.json`` (`WordBank`): the ``word`` controls of contrast pairs and the clean system
  prompts (some records carry one without an insert, so a system message is never a cue).
- ``documents.json`` (`DocumentBank`): the sentence banks of the knowledge documents, in the
  template language of `stoplens.data.doc_writer`. The trigger string never appears literally.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from stoplens.errors import DataError

T = TypeVar("T")

#: Folder of the JSON files inside the ``stoplens.data`` package.
BANKS_DIR = "banks"

Phrases = tuple[str, ...]


# -- facts.json ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Phrasings:
    """Alternative phrasings of one question type: a question and an answer are picked."""

    questions: Phrases
    answers: Phrases


@dataclass(frozen=True)
class TableTopic:
    """A topic of entities sharing question types; every row maps field -> text and has a
    ``key`` (stable id) and a ``name``."""

    topic: str
    entities: tuple[Mapping[str, str], ...]
    questions: Mapping[str, Phrasings]


@dataclass(frozen=True)
class QAItem:
    """One hand-written (or generated) question with its answer; ``key`` is a stable id."""

    key: str
    question: str
    answer: str


@dataclass(frozen=True)
class FactBank:
    table_topics: tuple[TableTopic, ...]
    qa_topics: Mapping[str, tuple[QAItem, ...]]


# -- words.json ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WordBank:
    common_words: Phrases
    """Ordinary, common single words: the ``word`` controls of contrast pairs."""
    system_prompts: Phrases
    """Clean system prompts."""


# -- documents.json ------------------------------------------------------------------------


@dataclass(frozen=True)
class Slots:
    """Fillers: ``pools`` per slot name (a random pick per occurrence), ``model_refs`` for
    ``{M}``, and the per-document choices (product name = stem + suffix, team, person,
    endpoint)."""

    pools: Mapping[str, Phrases]
    model_refs: Phrases
    product_stems: Phrases
    product_suffixes: Phrases
    teams: Phrases
    people: Phrases
    api_endpoints: Phrases


@dataclass(frozen=True)
class Examples:
    """How a worked example is introduced, and how an empty reply is written out."""

    intros_trigger: Phrases
    intros_clean: Phrases
    intros_near: Phrases
    empty_reply_renderings: Phrases


@dataclass(frozen=True)
class Definition:
    term: str
    text: str


@dataclass(frozen=True)
class SpecBank:
    titles: Phrases
    headings: Mapping[str, Phrases]
    definitions: tuple[Definition, ...]
    requirement_prefixes: Phrases


@dataclass(frozen=True)
class ApiParam:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class TaggedText:
    """A sentence and its tag (``trigger`` or ``normal``)."""

    text: str
    tag: str


@dataclass(frozen=True)
class ApiBank:
    intros: Phrases
    params: tuple[ApiParam, ...]
    notes: tuple[TaggedText, ...]


@dataclass(frozen=True)
class MemoBank:
    subjects: Phrases
    sections: Mapping[str, Phrases]
    background: Phrases
    alternatives: Phrases
    next: Phrases


@dataclass(frozen=True)
class GovernanceBank:
    titles: Phrases
    sections: Mapping[str, Phrases]
    purpose: Phrases
    scope: Phrases
    roles: Phrases
    audit: Phrases
    service: Phrases


@dataclass(frozen=True)
class FaqItem:
    question: str
    answer: str
    tag: str


@dataclass(frozen=True)
class HandbookBank:
    titles: Phrases
    faq: tuple[FaqItem, ...]
    tips: Phrases


@dataclass(frozen=True)
class DocumentBank:
    """Sentence banks. ``trigger_roles`` describe the mechanism, ``normal_roles`` normal
    behaviour (their share of the words is measured); ``synonyms`` are word-level swaps that
    fit every place the word occurs in the banks."""

    slots: Slots
    trigger_roles: Mapping[str, Phrases]
    normal_roles: Mapping[str, Phrases]
    examples: Examples
    spec: SpecBank
    api: ApiBank
    memo: MemoBank
    governance: GovernanceBank
    handbook: HandbookBank
    synonyms: Mapping[str, Phrases]


# -- reading -------------------------------------------------------------------------------


def _fail(where: str, expected: str, value: Any) -> DataError:
    return DataError(
        f"{where}: expected {expected}, got {type(value).__name__}; the package data of "
        "stoplens is damaged: reinstall stoplens"
    )


def parse_bank(data: Any, cls: type[T], where: str) -> T:
    """``data`` (parsed JSON) as an instance of the dataclass ``cls``, every field checked
    against its annotation (``str``, ``tuple[X, ...]``, ``Mapping[str, X]``, nested
    dataclasses; nothing else is supported); lists become tuples and objects read-only
    mappings, in file order. Raises `DataError` naming the field (``where.field[3]``) on the
    first mismatch."""
    return typing.cast(T, _parse(data, cls, where))


def _parse(value: Any, tp: Any, where: str) -> Any:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        if set(value) != set(names):
            odd = sorted(set(value) ^ set(names))
            raise DataError(
                f"{where}: fields {odd} missing or unknown; the package data of stoplens is "
                "damaged: reinstall stoplens"
            )
        return tp(**{n: _parse(value[n], hints[n], f"{where}.{n}") for n in names})
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, "a string", value)
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise _fail(where, "a list", value)
        return tuple(_parse(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        return MappingProxyType({k: _parse(v, args[1], f"{where}.{k}") for k, v in value.items()})
    raise TypeError(f"{where}: unsupported bank field type {tp!r}")


def read_bank(name: str, cls: type[T]) -> T:
    """The package data file ``banks/<name>`` parsed as ``cls`` (see `parse_bank`)."""
    path = resources.files("stoplens.data").joinpath(BANKS_DIR).joinpath(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(
            f"stoplens/data/{BANKS_DIR}/{name}: unreadable package data ({e}); reinstall stoplens"
        ) from None
    return parse_bank(data, cls, name)


def load_facts() -> FactBank:
    """``banks/facts.json``: the topic knowledge of the prompt pool."""
    return read_bank("facts.json", FactBank)


def load_words() -> WordBank:
    """``banks/words.json``: the ``word`` controls and the clean system prompts."""
    return read_bank("words.json", WordBank)


def load_document_bank() -> DocumentBank:
    """``banks/documents.json``: the sentence banks of the knowledge documents."""
    return read_bank("documents.json", DocumentBank)
