"""Progress that reads well both on a terminal and in a log file.

On a terminal (stderr is a TTY) a bar redraws in place (tqdm). Anywhere else (a log file, CI,
a pipe) a bar would fill the log with carriage returns, so instead one plain line is printed
when the task starts, at most every ``log_every`` seconds while it runs (with count, rate and
elapsed time) and when it ends. ``STOPLENS_PROGRESS=bar|lines|off`` overrides the choice.

Owns: `bar` (counted work), `stage` (one line announcing a step), `timed` (a stage line
with its duration) and `quiet_library_bars` (no third-party bars in a log). Must not:
compute anything or know about models.

Usage::

    with bar(total=len(items), desc="causal: patching") as b:
        for x in items:
            ...
            b.update(1)

    stage("causal: direction selection on 57 VAL pairs")
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

_MODES = ("bar", "lines", "off")


def mode(stream: IO[str] | None = None) -> str:
    """ "bar" on a terminal, "lines" elsewhere; ``STOPLENS_PROGRESS`` overrides."""
    env = os.environ.get("STOPLENS_PROGRESS", "").strip().lower()
    if env in _MODES:
        return env
    s = stream if stream is not None else sys.stderr
    try:
        return "bar" if s.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class LineBar:
    """The log-file form of a progress bar: plain lines, never carriage returns."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        stream: IO[str] | None = None,
        log_every: float = 15.0,
        enabled: bool = True,
        unit: str = "it",
    ) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.log_every = float(log_every)
        self.enabled = enabled
        self.unit = unit
        self.n = 0
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._closed = False
        if self.enabled:
            what = f"{total} {unit}" if total is not None else "started"
            self._write(f"{desc}: {what}")

    def _write(self, text: str) -> None:
        print(f"[stoplens] {text}", file=self.stream, flush=True)

    def _line(self) -> str:
        el = time.perf_counter() - self._t0
        rate = self.n / el if el > 0 else 0.0
        if self.total:
            pct = 100.0 * self.n / self.total
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            eta = f", ~{fmt_s(left)} left" if left == left and self.n < self.total else ""
            return (
                f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), "
                f"{fmt_s(el)} elapsed{eta}"
            )
        return f"{self.desc}: {self.n} {self.unit}, {fmt_s(el)} elapsed"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        finished = self.total is not None and self.n >= self.total  # close() says "done"
        if self.enabled and not finished and now - self._last >= self.log_every:
            self._last = now
            self._write(self._line())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._write(self._line().replace(" elapsed", "") + " done")

    def __enter__(self) -> LineBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(
    total: int | None = None,
    desc: str = "",
    *,
    enabled: bool = True,
    unit: str = "it",
    leave: bool = False,
    log_every: float = 15.0,
    stream: IO[str] | None = None,
) -> Any:
    """A progress bar object with ``update(n)``, ``close()`` and context-manager use: tqdm on
    a terminal, `LineBar` elsewhere, a silent `LineBar` when disabled or mode is "off"."""
    m = mode(stream)
    if not enabled or m == "off":
        return LineBar(total, desc, enabled=False, unit=unit)
    if m == "bar":
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=stream)
    return LineBar(total, desc, stream=stream, log_every=log_every, unit=unit)


def stage(msg: str, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
    """One line announcing a step: colored on a terminal, plain in a log."""
    if not enabled or mode(stream) == "off":
        return
    s = stream if stream is not None else sys.stderr
    if mode(stream) == "bar":
        from rich.console import Console

        Console(file=s).print(f"[bold cyan]stoplens[/] {msg}", highlight=False)
    else:
        print(f"[stoplens] {msg}", file=s, flush=True)


def quiet_library_bars(stream: IO[str] | None = None) -> bool:
    """Outside a terminal ("lines" / "off" mode), switch off the Hugging Face libraries' own
    tqdm bars (e.g. transformers' "Loading weights"), which would write carriage returns into
    the log. Called by the CLI before a command runs; returns whether it switched them off."""
    if mode(stream) == "bar":
        return False
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # transformers reads this when it is imported ...
    if "transformers" in sys.modules:  # ... or, if it already was, is told directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return True


@contextmanager
def timed(
    msg: str, *, enabled: bool = True, timings: dict[str, float] | None = None, key: str = ""
) -> Iterator[None]:
    """`stage` the message, run the block, then `stage` its duration; with ``timings`` the
    seconds are also recorded under ``key`` (default: the message)."""
    stage(msg, enabled=enabled)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        if timings is not None:
            timings[key or msg] = round(dt, 2)
        stage(f"{msg}: done in {fmt_s(dt)}", enabled=enabled)
