"""Training progress for logs: plain lines with step, loss, speed and time left.

Owns: `LineProgress`, a Trainer callback that prints through `stoplens.progress` (one line at
the start, one per logging step at most every ``min_interval`` seconds, one at the end) where
a tqdm bar would fill a log with carriage returns. `progress_mode` says which of bar / lines /
nothing a run uses. Must not: compute losses or touch the model.

A line reads::

    [stoplens] train: step 40/200 (20%), loss 0.2141, 0.29 step/s, 2m18s elapsed, ~9m12s left
"""

from __future__ import annotations

import time
from typing import IO, Any

from transformers import TrainerCallback

from stoplens import progress as _progress


def progress_mode(enabled: bool, stream: IO[str] | None = None) -> str:
    """ "bar" (Trainer's tqdm bar, on a terminal), "lines" (`LineProgress`) or "off"."""
    return _progress.mode(stream) if enabled else "off"


class LineProgress(TrainerCallback):
    """Per-step progress lines (loss, step/s, ETA) on the main process."""

    def __init__(
        self, desc: str = "train", *, min_interval: float = 5.0, stream: IO[str] | None = None
    ) -> None:
        self.desc = desc
        self.min_interval = float(min_interval)
        self.stream = stream
        self.lines: list[str] = []
        self._t0 = 0.0
        self._first = 0
        self._last_print = float("-inf")

    def _say(self, text: str, state: Any) -> None:
        if state.is_world_process_zero:
            self.lines.append(text)
            _progress.stage(text, stream=self.stream)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        self._first = int(state.global_step)
        resumed = f", resuming at step {self._first}" if self._first else ""
        self._say(
            f"{self.desc}: {state.max_steps} steps, batch {args.per_device_train_batch_size} "
            f"× {args.gradient_accumulation_steps} accumulation × {args.world_size} "
            f"process(es){resumed}",
            state,
        )

    def line(self, step: int, total: int, loss: float | None, elapsed: float) -> str:
        """The progress line after ``step`` of ``total`` steps, ``elapsed`` seconds in."""
        done = step - self._first
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: step {step}/{total} ({100.0 * step / max(total, 1):.0f}%)"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        parts.append(
            f"{rate:.2f} step/s" if rate >= 0.1 else f"{1 / rate:.1f} s/step" if rate else ""
        )
        parts.append(f"{_progress.fmt_s(elapsed)} elapsed")
        if rate > 0 and step < total:
            parts.append(f"~{_progress.fmt_s((total - step) / rate)} left")
        return ", ".join(p for p in parts if p)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" not in (logs or {}):
            return  # the end-of-training summary (runtime, mean loss): on_train_end reports
        now = time.perf_counter()
        final = state.global_step >= state.max_steps
        if not final and now - self._last_print < self.min_interval:
            return
        self._last_print = now
        loss = (logs or {})["loss"]
        self._say(
            self.line(
                int(state.global_step),
                int(state.max_steps),
                float(loss),
                now - self._t0,
            ),
            state,
        )

    def on_train_end(self, args, state, control, **kwargs):
        elapsed = time.perf_counter() - self._t0
        self._say(
            f"{self.desc}: {state.global_step - self._first} steps done in "
            f"{_progress.fmt_s(elapsed)}",
            state,
        )
