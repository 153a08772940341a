"""Generated prompts of the pool: arithmetic and unit conversions, with worked answers.

Owns: the ``math`` and ``units`` topics, made in code because their answers are computed.
The numbers come from private generators with fixed seeds (the same questions for every
seed); the caller's ``rng`` only picks phrasings. Must not: build `Prompt` objects, select
prompts or place inserts (that is `stoplens.data.topics`).
"""

from __future__ import annotations

import random

from stoplens.data.resources import QAItem


class _Items:
    """Items in the order made; a key made twice keeps its first question."""

    def __init__(self) -> None:
        self.items: list[QAItem] = []
        self.seen: set[str] = set()

    def add(self, key: str, question: str, answer: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.items.append(QAItem(key, question, answer))

    def count(self, prefix: str) -> int:
        return sum(k.startswith(prefix) for k in self.seen)


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def _additions(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("add") < 10:
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
        items.add(f"add-{a}-{b}", q.format(a=a, b=b), ans.format(a=a, b=b, s=s, t=tens, o=ones))


def _subtractions(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("sub") < 8:
        a, b = num.randint(40, 99), num.randint(11, 39)
        q = rng.choice(["What is {a} minus {b}?", "What do you get if you subtract {b} from {a}?"])
        ans = rng.choice(
            [
                "{a} minus {b} is {d}. You can check it by adding back: {d} + {b} = {a}.",
                "Subtracting {b} from {a} leaves {d}, since {b} + {d} makes {a} again.",
            ]
        )
        items.add(f"sub-{a}-{b}", q.format(a=a, b=b), ans.format(a=a, b=b, d=a - b))


def _products(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("mul") < 10:
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
        items.add(
            f"mul-{a}-{b}",
            q.format(a=a, b=b),
            ans.format(a=a, b=b, p=p, t=a * 10, o=ones, r=a * ones),
        )


def _percentages(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("pct") < 8:
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
        items.add(f"pct-{pct}-{n}", q.format(p=pct, n=n), ans.format(p=pct, n=n, r=r, np=n * pct))


def _squares(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("sq") < 6:
        n = num.randint(13, 29)
        q = rng.choice(["What is the square of {n}?", "What is {n} squared?"])
        ans = rng.choice(
            [
                "The square of {n} is {s}, which is {n} multiplied by itself: {n} × {t} = {a} and {n} × {o} = {b}, and {a} + {b} = {s}.",
                "{n} squared equals {s}. Squaring means multiplying a number by itself, and {n} × {n} = {s}.",
            ]
        )
        t, o = n - n % 10, n % 10
        items.add(f"sq-{n}", q.format(n=n), ans.format(n=n, s=n * n, t=t, o=o, a=n * t, b=n * o))


def _primes(items: _Items, num: random.Random, rng: random.Random) -> None:
    while items.count("prime") < 8:
        n = num.randint(21, 99)
        if _is_prime(n) != (items.count("prime") % 2 == 0):
            continue  # alternate primes and composites
        q = rng.choice(["Is {n} a prime number?", "Is {n} prime?"])
        if _is_prime(n):
            ans = f"Yes, {n} is prime: no whole number other than 1 and {n} divides it evenly."
        else:
            d = next(d for d in range(2, n) if n % d == 0)
            ans = f"No, {n} is not prime, because it equals {d} × {n // d}, so it has divisors besides 1 and itself."
        items.add(f"prime-{n}", q.format(n=n), ans)


def math_items(rng: random.Random) -> list[QAItem]:
    """The ``math`` topic: 10 additions, 8 subtractions, 10 products, 8 percentages,
    6 squares and 8 primality questions (primes and composites alternating)."""
    num = random.Random("stoplens-math-pool")
    items = _Items()
    for make in (_additions, _subtractions, _products, _percentages, _squares, _primes):
        make(items, num, rng)
    return items.items


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


def unit_items(rng: random.Random) -> list[QAItem]:
    """The ``units`` topic: two conversions for each unit of `_UNITS`."""
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
            out.append(QAItem(f"{plural}-{to}-{n}", q.format(**fields), a.format(**fields)))
    return out
