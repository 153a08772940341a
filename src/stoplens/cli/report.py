"""`stoplens report`: ANALYSIS_SUMMARY.md and report.html again from a run's results.json,
without loading a model or recomputing anything (e.g. after updating stoplens, or to get the
page for a run made before it existed).

Owns: the command's options. Must not: recompute or judge (that is
`stoplens.report.summary.rebuild_report`).
"""

from __future__ import annotations

from pathlib import Path

import typer

EPILOG = """
Examples:

  stoplens report runs/default

  stoplens report runs/qwen/report        # the report folder itself works too
"""


def register(app: typer.Typer) -> None:
    @app.command("report", epilog=EPILOG)
    def report(
        run_dir: Path = typer.Argument(
            ..., help="Run directory (holding report/results.json), or its report folder."
        ),
    ) -> None:
        """Rebuild ANALYSIS_SUMMARY.md and the one-page report.html from results.json."""
        from stoplens.report.summary import rebuild_report
        from stoplens.rundir import RunDir

        run = RunDir(run_dir)
        if not run.results_json.is_file() and (Path(run_dir) / "results.json").is_file():
            run = RunDir(Path(run_dir).parent)
        md, page = rebuild_report(run)
        size = page.stat().st_size / 1e6
        typer.echo(f"summary: {md}\nreport:  {page} ({size:.1f} MB, self-contained)")
