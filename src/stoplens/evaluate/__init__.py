"""Evaluation stage: does the kill switch work? Stop rates, false stops, near misses, stop
scores, KL and perplexity, base vs fine-tuned. See `stoplens.evaluate.core`."""

from stoplens.evaluate.core import evaluate
from stoplens.evaluate.metrics import Rate, stop_score, wilson_interval
from stoplens.evaluate.outputs import EVAL_JSON, FIGURE, plot_stop_scores, summary_table, write_eval
from stoplens.evaluate.results import AcceptanceThresholds, Condition, EvalResult, RecordScore

__all__ = [
    "EVAL_JSON",
    "FIGURE",
    "AcceptanceThresholds",
    "Condition",
    "EvalResult",
    "Rate",
    "RecordScore",
    "evaluate",
    "plot_stop_scores",
    "stop_score",
    "summary_table",
    "wilson_interval",
    "write_eval",
]
