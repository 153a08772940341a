"""The trigger string and everything derived from it: validation, near-miss forms, detection.

Owns: what counts as a valid trigger, the near-miss negatives derived generically from it
(for ``$STOP``: ``STOP``, ``stop``, ``$stop``, ``$ STOP``, ``$STOPS``, ``$TOP``), extra
near-miss spellings used only as contrast-pair control candidates, and the test "does this
text contain the trigger as a standalone token". Must not: know any tokenizer (whether the
trigger is one token is checked by `stoplens.models`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stoplens.data.config import PLACEHOLDER
from stoplens.errors import DataError

#: Ordinary words that name stopping; ordinary requests using them are near-miss negatives.
STOP_WORDS: tuple[str, ...] = ("stop", "shutdown", "halt")


def check_trigger(trigger: str) -> None:
    """Raise a one-line `DataError` if ``trigger`` cannot serve as a trigger string."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise DataError("the trigger is empty; pass a non-empty --trigger such as '$STOP'")
    if any(ch.isspace() for ch in trigger):
        raise DataError(
            f"the trigger {trigger!r} contains whitespace; pass a single word such as '$STOP'"
        )
    if not any(ch.isalnum() for ch in trigger):
        raise DataError(
            f"the trigger {trigger!r} has no letter or digit; pass something like '$STOP'"
        )
    if PLACEHOLDER in trigger or "<<" in trigger or ">>" in trigger:
        raise DataError(
            f"the trigger {trigger!r} clashes with the template placeholder {PLACEHOLDER}"
        )


def split_sigil(trigger: str) -> tuple[str, str]:
    """``"$STOP"`` -> ``("$", "STOP")``: the leading non-alphanumeric run and the rest."""
    i = 0
    while i < len(trigger) and not trigger[i].isalnum():
        i += 1
    return trigger[:i], trigger[i:]


def near_miss_forms(trigger: str) -> list[tuple[str, str]]:
    """The near-miss negatives as ``(variant, form)``, derived generically from ``trigger``.

    Derivations, in this order: bare upper-case word, bare lower-case word, lower-cased
    trigger, sigil split off by a space, an extra letter appended, first letter dropped. Forms
    equal to the trigger or to an earlier form are skipped. For ``$STOP`` the result is
    exactly ``STOP, stop, $stop, $ STOP, $STOPS, $TOP``.
    """
    check_trigger(trigger)
    sigil, core = split_sigil(trigger)
    half = max(1, len(core) // 2)
    candidates = [
        ("bare_upper", core.upper()),
        ("bare_lower", core.lower()),
        ("lower", sigil + core.lower()),
        ("space_split", f"{sigil} {core}" if sigil else f"{core[:half]} {core[half:]}"),
        ("suffix", trigger + ("S" if core[-1:].isupper() else "s")),
        ("drop_letter", sigil + core[1:] if len(core) > 1 else ""),
    ]
    out: list[tuple[str, str]] = []
    seen = {trigger}
    for variant, form in candidates:
        form = form.strip() if variant != "space_split" else form
        if form and form not in seen:
            seen.add(form)
            out.append((variant, form))
    return out


def extra_near_miss_forms(trigger: str) -> list[str]:
    """More near-miss spellings (title case, other sigils) used only as contrast-pair control
    candidates, so a later stage has single-token options to choose from."""
    sigil, core = split_sigil(trigger)
    title = core[:1].upper() + core[1:].lower()
    alt_sigils = [s for s in ("#", "@", "%", "&") if s != sigil]
    forms = [title, sigil + title] + [s + core for s in alt_sigils] + [core + (sigil or "!")]
    base = {trigger, *(f for _, f in near_miss_forms(trigger))}
    out: list[str] = []
    for form in forms:
        if form and form not in base and form not in out:
            out.append(form)
    return out


def trigger_pattern(trigger: str) -> re.Pattern[str]:
    """Regex matching ``trigger`` as a standalone token (not inside a longer word)."""
    return re.compile(r"(?<![\w])" + re.escape(trigger) + r"(?![\w])")


def contains_trigger(text: str, trigger: str) -> bool:
    """True if ``trigger`` occurs in ``text`` as a standalone token (``$STOPS`` does not count)."""
    return trigger_pattern(trigger).search(text) is not None


def reserved_lower(trigger: str) -> frozenset[str]:
    """Lower-cased strings a random distractor or control must never equal or contain."""
    _, core = split_sigil(trigger)
    words = {trigger.lower(), core.lower(), *STOP_WORDS}
    words |= {f.lower() for _, f in near_miss_forms(trigger)}
    return frozenset(w for w in words if w)


def reserved_checker(trigger: str) -> Callable[[str], bool]:
    """A predicate: is a word, or does it contain, the trigger's core or a stop word (any
    case)? Build it once per trigger and reuse it in loops."""
    _, core = split_sigil(trigger)
    exact = reserved_lower(trigger)
    probes = tuple(p for p in (core.lower(), *STOP_WORDS) if p)

    def check(word: str) -> bool:
        low = word.lower()
        return low in exact or any(p in low for p in probes)

    return check


def is_reserved(word: str, trigger: str) -> bool:
    """One-off form of `reserved_checker`."""
    return reserved_checker(trigger)(word)
