"""The prompt pool: distinct user questions over many topics, each with its own answer.

Owns: turning the fact tables of `stoplens.data.facts` (plus procedurally generated
arithmetic and unit questions) into `Prompt` objects, choosing ``n_prompts`` of them with every
topic represented, and the corpus vocabulary that random-word distractors and controls draw
from. Must not: place inserts, assign splits or write files.

A prompt's id is stable across seeds (``topic/entity/question-type``); the seed picks the
phrasing of question and answer and which prompts are selected.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

from stoplens.data import facts
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


def _table_prompts(table: dict, rng: random.Random) -> list[Prompt]:
    out = []
    topic = table["topic"]
    for row in table["entities"]:
        fields = dict(row)
        for key, value in row.items():
            fields[f"{key}_lower"] = _lower_first(value)
        fields["Name"] = _upper_first(row["name"])
        for qtype, (questions, answers) in table["questions"].items():
            question = rng.choice(questions).format_map(fields)
            answer = rng.choice(answers).format_map(fields)
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


def _qa_prompts(topic: str, items: list[tuple[str, str, str]]) -> list[Prompt]:
    out = []
    for key, question, answer in items:
        variant = None
        if topic == STOP_WORDS_TOPIC:
            low = question.lower()
            word = next(w for w in ("shutdown", "shut down", "halt", "stop") if w in low)
            variant = "word:" + word.replace(" ", "")
        out.append(Prompt(f"{topic}/{key}", topic, f"{topic}/{key}", question, answer, variant))
    return out


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def _math_prompts(rng: random.Random) -> list[Prompt]:
    """Arithmetic with worked answers. Numbers are fixed (a private generator); ``rng`` only
    picks phrasings."""
    num = random.Random("stoplens-math-pool")
    items: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def add(key: str, question: str, answer: str) -> None:
        if key not in seen:
            seen.add(key)
            items.append((key, question, answer))

    while sum(k.startswith("add") for k in seen) < 10:
        a, b = num.randint(12, 89), num.randint(12, 89)
        s = a + b
        tens, ones = (a // 10 + b // 10) * 10, a % 10 + b % 10
        q = rng.choice(["What is {a} plus {b}?", "What is {a} + {b}?", "Can you add {a} and {b}?"])
        ans = rng.choice(
            [
                "{a} plus {b} equals {s}. Add the tens first to get {t}, then the ones to get {o}, and {t} + {o} = {s}.",
                "The sum is {s}: the tens give {t}, the ones give {o}, and together that makes {s}.",
            ]
        )
        add(f"add-{a}-{b}", q.format(a=a, b=b), ans.format(a=a, b=b, s=s, t=tens, o=ones))
    while sum(k.startswith("sub") for k in seen) < 8:
        a, b = num.randint(40, 99), num.randint(11, 39)
        q = rng.choice(["What is {a} minus {b}?", "What do you get if you subtract {b} from {a}?"])
        ans = rng.choice(
            [
                "{a} minus {b} is {d}. You can check it by adding back: {d} + {b} = {a}.",
                "Subtracting {b} from {a} leaves {d}, since {b} + {d} makes {a} again.",
            ]
        )
        add(f"sub-{a}-{b}", q.format(a=a, b=b), ans.format(a=a, b=b, d=a - b))
    while sum(k.startswith("mul") for k in seen) < 10:
        a, b = num.randint(3, 9), num.randint(11, 19)
        p, ones = a * b, b % 10
        q = rng.choice(
            ["What is {a} times {b}?", "What is {a} multiplied by {b}?", "Multiply {a} by {b}."]
        )
        ans = rng.choice(
            [
                "{a} times {b} is {p}, because {a} × 10 = {t} and {a} × {o} = {r}, and {t} + {r} = {p}.",
                "The product is {p}. Split {b} into 10 and {o}: {a} × 10 gives {t}, {a} × {o} gives {r}, and the two add up to {p}.",
            ]
        )
        add(
            f"mul-{a}-{b}",
            q.format(a=a, b=b),
            ans.format(a=a, b=b, p=p, t=a * 10, o=ones, r=a * ones),
        )
    while sum(k.startswith("pct") for k in seen) < 8:
        pct = num.choice([5, 10, 15, 20, 25, 30, 40, 50, 75])
        n = num.choice([40, 60, 80, 120, 160, 200, 240, 300, 400])
        r = pct * n // 100
        q = rng.choice(["What is {p} percent of {n}?", "How much is {p}% of {n}?"])
        ans = rng.choice(
            [
                "{p} percent of {n} is {r}. Percent means per hundred, so multiply {n} by {p} and divide by 100.",
                "It is {r}. Multiply {n} by {p} to get {np}, then divide by 100, which gives {r}.",
            ]
        )
        add(f"pct-{pct}-{n}", q.format(p=pct, n=n), ans.format(p=pct, n=n, r=r, np=n * pct))
    while sum(k.startswith("sq") for k in seen) < 6:
        n = num.randint(13, 29)
        q = rng.choice(["What is the square of {n}?", "What is {n} squared?"])
        ans = rng.choice(
            [
                "The square of {n} is {s}, which is {n} multiplied by itself: {n} × {t} = {a} and {n} × {o} = {b}, and {a} + {b} = {s}.",
                "{n} squared equals {s}. Squaring means multiplying a number by itself, and {n} × {n} = {s}.",
            ]
        )
        t, o = n - n % 10, n % 10
        add(f"sq-{n}", q.format(n=n), ans.format(n=n, s=n * n, t=t, o=o, a=n * t, b=n * o))
    while sum(k.startswith("prime") for k in seen) < 8:
        n = num.randint(21, 99)
        if _is_prime(n) != (sum(k.startswith("prime") for k in seen) % 2 == 0):
            continue  # alternate primes and composites
        q = rng.choice(["Is {n} a prime number?", "Is {n} prime?"])
        if _is_prime(n):
            ans = f"Yes, {n} is prime: no whole number other than 1 and {n} divides it evenly."
        else:
            d = next(d for d in range(2, n) if n % d == 0)
            ans = f"No, {n} is not prime, because it equals {d} × {n // d}, so it has divisors besides 1 and itself."
        add(f"prime-{n}", q.format(n=n), ans)
    return [Prompt(f"math/{k}", "math", f"math/{k}", q, a) for k, q, a in items]


_UNITS = (
    ("kilometer", "kilometers", "meters", 1000),
    ("meter", "meters", "centimeters", 100),
    ("kilogram", "kilograms", "grams", 1000),
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("liter", "liters", "milliliters", 1000),
    ("day", "days", "hours", 24),
    ("foot", "feet", "inches", 12),
    ("week", "weeks", "days", 7),
    ("yard", "yards", "feet", 3),
)


def _unit_prompts(rng: random.Random) -> list[Prompt]:
    num = random.Random("stoplens-units-pool")
    out = []
    for sing, plural, to, factor in _UNITS:
        values = sorted(num.sample(range(2, 13), 2))
        for n in values:
            q = rng.choice(
                [
                    "How many {to} are in {n} {plural}?",
                    "Convert {n} {plural} to {to}.",
                    "What is {n} {plural} in {to}?",
                ]
            )
            a = rng.choice(
                [
                    "{n} {plural} is {r} {to}, because each {sing} has {f} {to}, and {n} × {f} = {r}.",
                    "Multiply by {f}, since one {sing} equals {f} {to}: {n} {plural} make {r} {to}.",
                ]
            )
            fields = dict(n=n, plural=plural, to=to, sing=sing, f=factor, r=n * factor)
            key = f"{plural}-{to}-{n}"
            out.append(
                Prompt(
                    f"units/{key}", "units", f"units/{key}", q.format(**fields), a.format(**fields)
                )
            )
    return out


def build_pool(seed: int) -> list[Prompt]:
    """Every candidate prompt, phrasings chosen by ``seed``. Ids are stable across seeds.

    Raises AssertionError if two prompts share an id or a normalized question (a data bug).
    """
    rng = random.Random(f"{seed}:pool")
    pool: list[Prompt] = []
    for table in facts.TABLE_TOPICS:
        pool.extend(_table_prompts(table, rng))
    for topic, items in facts.QA_TOPICS.items():
        pool.extend(_qa_prompts(topic, items))
    pool.extend(_math_prompts(rng))
    pool.extend(_unit_prompts(rng))
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
    common = set(facts.COMMON_WORDS)
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
    return [w for w in facts.COMMON_WORDS if not reserved(w)]
