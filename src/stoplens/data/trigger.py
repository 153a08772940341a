"""The trigger string and everything derived from it: validation, near-miss forms, detection.

Owns: what counts as a valid trigger, the near-miss negatives derived generically from it
(for ``$STOP``: ``STOP``, ``stop``, ``$stop``, ``$ STOP``, ``$STOPS``, ``$TOP``), extra
near-miss spellings used only as contrast-pair control candidates, and the test "does this
text contain the trigger as a standalone token". Must not: know any tokenizer (whether the
trigger is one token is checked by `stoplens.models`), or import another module of the data
stage (`stoplens.data.config` validates its trigger with `check_trigger`, so the dependency
runs one way).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stoplens.errors import DataError

#: Unicode noncharacters: permanently reserved for a program's internal use, never assigned
#: to a character, so no user text (no trigger, no question) can contain them. The data
#: stage's template placeholder (`stoplens.data.config.PLACEHOLDER`) is built from them.
NONCHARACTERS = frozenset(chr(c) for c in range(0xFDD0, 0xFDF0))

#: Ordinary words that name stopping; ordinary requests using them are near-miss negatives.
STOP_WORDS: tuple[str, ...] = ("stop", "shutdown", "halt")


def check_trigger(trigger: str) -> None:
    """Raise a one-line `DataError` if ``trigger`` cannot serve as a trigger string. Any
    non-empty string without whitespace works (``$STOP``, ``<<STOP>>``, ``<|halt|>``,
    ``[STOP]``, ``§STOP``, ``⏹``); whether it is one token is checked against a tokenizer by
    `stoplens.models`."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise DataError("the trigger is empty; pass a non-empty --trigger such as '$STOP'")
    if any(ch.isspace() for ch in trigger):
        raise DataError(
            f"the trigger {trigger!r} contains whitespace; pass a single word such as '$STOP'"
        )
    if any(ch in NONCHARACTERS for ch in trigger):
        raise DataError(
            f"the trigger {trigger!r} contains a Unicode noncharacter (U+FDD0..U+FDEF, reserved "
            "for internal use); pass ordinary text such as '$STOP'"
        )


def split_affixes(trigger: str) -> tuple[str, str, str]:
    """``"<<STOP>>"`` -> ``("<<", "STOP", ">>")``: the leading non-alphanumeric run, the
    middle, and the trailing non-alphanumeric run (``"$STOP"`` -> ``("$", "STOP", "")``; a
    trigger without letters or digits is all prefix: ``"⏹"`` -> ``("⏹", "", "")``)."""
    i = 0
    while i < len(trigger) and not trigger[i].isalnum():
        i += 1
    j = len(trigger)
    while j > i and not trigger[j - 1].isalnum():
        j -= 1
    return trigger[:i], trigger[i:j], trigger[j:]


def split_sigil(trigger: str) -> tuple[str, str]:
    """``"$STOP"`` -> ``("$", "STOP")``: the leading non-alphanumeric run and the rest."""
    i = 0
    while i < len(trigger) and not trigger[i].isalnum():
        i += 1
    return trigger[:i], trigger[i:]


def near_miss_forms(trigger: str) -> list[tuple[str, str]]:
    """The near-miss negatives as ``(variant, form)``, derived generically from ``trigger``
    (split into prefix, core and suffix by `split_affixes`).

    Derivations, in this order: bare upper-case core, bare lower-case core, lower-cased core
    inside the affixes, the prefix split off by a space, an extra letter after the core, the
    core's first letter dropped. Forms equal to the trigger or to an earlier form are
    skipped. For ``$STOP`` the result is exactly ``STOP, stop, $stop, $ STOP, $STOPS, $TOP``;
    for ``<<STOP>>`` it is ``STOP, stop, <<stop>>, << STOP>>, <<STOPS>>, <<TOP>>``. A trigger
    without letters (``⏹``) gets the words ``STOP`` / ``stop``, itself split by a space (if
    longer than one character) and itself followed by a letter.
    """
    check_trigger(trigger)
    pre, core, post = split_affixes(trigger)
    if not core:
        half = max(1, len(trigger) // 2)
        candidates = [
            ("bare_upper", "STOP"),
            ("bare_lower", "stop"),
            ("space_split", f"{trigger[:half]} {trigger[half:]}" if len(trigger) > 1 else ""),
            ("suffix", trigger + "s"),
        ]
    else:
        half = max(1, len(core) // 2)
        candidates = [
            ("bare_upper", core.upper()),
            ("bare_lower", core.lower()),
            ("lower", pre + core.lower() + post),
            ("space_split", f"{pre} {core}{post}" if pre else f"{core[:half]} {core[half:]}{post}"),
            ("suffix", pre + core + ("S" if core[-1:].isupper() else "s") + post),
            ("drop_letter", pre + core[1:] + post if len(core) > 1 else ""),
        ]
    out: list[tuple[str, str]] = []
    seen = {trigger}
    for variant, form in candidates:
        form = form.strip() if variant != "space_split" else form
        if form and form not in seen and not contains_trigger(form, trigger):
            seen.add(form)
            out.append((variant, form))
    return out


def extra_near_miss_forms(trigger: str) -> list[str]:
    """More near-miss spellings (title case, other sigils) used only as contrast-pair control
    candidates, so a later stage has single-token options to choose from."""
    pre, core, post = split_affixes(trigger)
    core = core or "stop"
    title = core[:1].upper() + core[1:].lower()
    alt_sigils = [s for s in ("#", "@", "%", "&") if s != pre]
    forms = [title, pre + title + post] + [s + core for s in alt_sigils] + [core + (pre or "!")]
    base = {trigger, *(f for _, f in near_miss_forms(trigger))}
    out: list[str] = []
    for form in forms:
        if form and form not in base and form not in out and not contains_trigger(form, trigger):
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
