"""The prompt pool: distinct user questions over many topics, each with its own answer.

Owns: turning the topic knowledge of ``banks/facts.json`` (`stoplens.data.resources`) and the
generated arithmetic and unit questions (`stoplens.data.arithmetic`) into `Prompt` objects,
choosing ``n_prompts`` of them with every topic represented, and the corpus vocabulary that
random-word distractors and controls draw from. Must not: place inserts, assign splits or
write files.

A prompt's id is stable across seeds (``topic/entity/question-type``); the seed picks the
phrasing of question and answer and which prompts are selected.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from stoplens.data.arithmetic import math_items, unit_items
from stoplens.data.resources import QAItem, TableTopic, load_facts, load_words
from stoplens.data.trigger import reserved_checker

#: The topic whose questions use the words stop/shutdown/halt (near-miss negatives).
STOP_WORDS_TOPIC = "stop_words"


@dataclass(frozen=True)
class Prompt:
    """One underlying user prompt and its template answer.

    ``group`` ties prompts about the same entity together (they always share a split);
    ``variant`` is set for ordinary requests that use a stop word (e.g. ``"word:stop"``).
    """

    prompt_id: str
    topic: str
    group: str
    question: str
    answer: str
    variant: str | None = None


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _table_prompts(table: TableTopic, rng: random.Random) -> list[Prompt]:
    out = []
    topic = table.topic
    for row in table.entities:
        fields = dict(row)
        for key, value in row.items():
            fields[f"{key}_lower"] = _lower_first(value)
        fields["Name"] = _upper_first(row["name"])
        for qtype, phrasings in table.questions.items():
            question = rng.choice(phrasings.questions).format_map(fields)
            answer = rng.choice(phrasings.answers).format_map(fields)
            out.append(
                Prompt(
                    prompt_id=f"{topic}/{row['key']}/{qtype}",
                    topic=topic,
                    group=f"{topic}/{row['key']}",
                    question=_upper_first(question),
                    answer=_upper_first(answer),
                )
            )
    return out


def _qa_prompts(topic: str, items: Sequence[QAItem]) -> list[Prompt]:
    out = []
    for item in items:
        variant = None
        if topic == STOP_WORDS_TOPIC:
            low = item.question.lower()
            word = next(w for w in ("shutdown", "shut down", "halt", "stop") if w in low)
            variant = "word:" + word.replace(" ", "")
        pid = f"{topic}/{item.key}"
        out.append(Prompt(pid, topic, pid, item.question, item.answer, variant))
    return out


def build_pool(seed: int) -> list[Prompt]:
    """Every candidate prompt, phrasings chosen by ``seed``. Ids are stable across seeds.

    Raises AssertionError if two prompts share an id or a normalized question (a data bug).
    """
    rng = random.Random(f"{seed}:pool")
    facts = load_facts()
    pool: list[Prompt] = []
    for table in facts.table_topics:
        pool.extend(_table_prompts(table, rng))
    for topic, items in facts.qa_topics.items():
        pool.extend(_qa_prompts(topic, items))
    pool.extend(_qa_prompts("math", math_items(rng)))
    pool.extend(_qa_prompts("units", unit_items(rng)))
    ids = [p.prompt_id for p in pool]
    assert len(set(ids)) == len(ids), "duplicate prompt ids in the built-in pool"
    questions = [normalize_text(p.question) for p in pool]
    assert len(set(questions)) == len(questions), "duplicate questions in the built-in pool"
    return pool


def select_prompts(pool: list[Prompt], n: int, seed: int) -> list[Prompt]:
    """Choose ``n`` prompts, round-robin over topics (each topic's prompts shuffled), so
    every topic is represented and small topics are not crowded out."""
    rng = random.Random(f"{seed}:select")
    by_topic: dict[str, list[Prompt]] = defaultdict(list)
    for p in pool:
        by_topic[p.topic].append(p)
    topics = sorted(by_topic)
    for t in topics:
        rng.shuffle(by_topic[t])
    chosen: list[Prompt] = []
    depth = 0
    while len(chosen) < n:
        progressed = False
        for t in topics:
            if depth < len(by_topic[t]) and len(chosen) < n:
                chosen.append(by_topic[t][depth])
                progressed = True
        if not progressed:
            break
        depth += 1
    return chosen


_WORD = re.compile(r"[A-Za-z]+")


def normalize_text(text: str) -> str:
    """Lower-case, letters and digits only, single spaces: the key for "same question"."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def corpus_vocabulary(pool: list[Prompt], trigger: str) -> list[str]:
    """Sorted ordinary words (3-10 letters) from all questions and answers of the pool,
    without stop words, trigger look-alikes or the ``word`` controls' list."""
    common = set(load_words().common_words)
    reserved = reserved_checker(trigger)
    words: set[str] = set()
    for p in pool:
        for w in _WORD.findall(p.question + " " + p.answer):
            low = w.lower()
            if 3 <= len(low) <= 10 and low not in common and not reserved(low):
                words.add(low)
    return sorted(words)


def common_words(trigger: str) -> list[str]:
    """The ordinary single words used as ``word`` controls, minus trigger look-alikes."""
    reserved = reserved_checker(trigger)
    return [w for w in load_words().common_words if not reserved(w)]
