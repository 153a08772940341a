"""Stage eval: behaviour of base vs fine-tuned on the held-out test split and the
out-of-template set; writes results/eval.json and its figure.

Owns: `run_eval`. Must not: compute a metric itself (that is `stoplens.evaluate`), or import
a later stage.
"""

from __future__ import annotations

from stoplens.errors import StoplensError
from stoplens.pipeline.config import log as _log
from stoplens.pipeline.stage_models import Models
from stoplens.rundir import RunDir


def run_eval(models: Models, run: RunDir, *, batch_size: int = 32, progress: bool = True):
    """Behavior evaluation on the test split and the out-of-template set; writes
    results/eval.json and its figure."""
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.evaluate import evaluate
    from stoplens.evaluate.outputs import write_eval

    if models.base is None:
        raise StoplensError("eval needs a base model for the side-by-side comparison; pass --base")
    records = load_behavioral(models.data_dir / behavioral_file("test"))
    _log(f"eval: {len(records)} held-out records, base vs fine-tuned", progress)
    result = evaluate(
        models.ft, models.base, records, batch_size=batch_size, progress=progress,
        out_of_template=True,
    )  # fmt: skip
    write_eval(result, run.results / "eval.json", run.report / "eval_stop_scores.png")
    if progress:
        from rich.console import Console

        from stoplens.evaluate import summary_table

        Console().print(summary_table(result))
    return result
