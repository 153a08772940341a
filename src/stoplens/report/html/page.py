"""The page being built: the sections in order, the figures placed so far, and the sections
that could not be laid out (each shows a visible notice and its raw numbers instead).

Owns: `Page` (collecting sections; placing each figure once). Must not: decide what a
section contains (the ``*_section`` / ``sections`` modules) or render the whole document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stoplens.report.html.layout import FIGURE_TITLES
from stoplens.report.html.parts import esc, figure, generic

log = logging.getLogger("stoplens.report.html")


class Page:
    """Collects sections (id, title, html) and the figures they placed."""

    def __init__(self, doc: dict[str, Any], report_dir: Path) -> None:
        self.doc = doc
        self.dir = Path(report_dir)
        figs = doc.get("figures")
        self.figures: dict[str, str] = dict(figs) if isinstance(figs, dict) else {}
        self.placed: set[str] = set()
        self.sections: list[tuple[str, str, str]] = []
        self.problems: list[str] = []

    def fig(self, key: str, caption: str = "") -> str:
        if key not in self.figures or key in self.placed:
            return ""
        self.placed.add(key)
        return figure(key, FIGURE_TITLES.get(key, key), self.dir / self.figures[key], caption)

    def add(self, ident: str, title: str, build: Callable[[], str], raw: Any = None) -> None:
        try:
            body = build()
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
            log.warning("report.html: section %r could not be laid out: %r", title, e)
            self.problems.append(title)
            body = (
                f'<p class="warn problem">This section could not be laid out ({esc(type(e).__name__)}: '
                f"{esc(e)}); its raw numbers follow.</p>"
                + (generic(raw) if raw is not None else "")
            )
        if body:
            self.sections.append((ident, title, body))
