"""The orchestration's shape: the pipeline's stage modules import only earlier stages (in
the order of `STAGES`), and neither the report nor the pipeline imports a later layer (the
report never the pipeline or the CLI; the pipeline never the CLI). Function-level imports
count too."""

from __future__ import annotations

import ast
from pathlib import Path

import stoplens.pipeline
import stoplens.report

STAGES = (
    "config",
    "resolve",
    "stage_finetune",
    "stage_models",
    "stage_eval",
    "stage_analyses",
    "stage_causal",
    "stage_components",
    "orchestrator",
)
PIPELINE_DIR = Path(stoplens.pipeline.__file__).parent
REPORT_DIR = Path(stoplens.report.__file__).parent


def _imports(source: str) -> set[str]:
    """Every module ``source`` imports (``from a.b import c`` counts as a.b and a.b.c)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def _later_stages(module: str, source: str) -> list[str]:
    """The pipeline stages ``module`` (one of `STAGES`) imports that come after it."""
    rank = {s: i for i, s in enumerate(STAGES)}
    found = {m.removeprefix("stoplens.pipeline.").split(".")[0] for m in _imports(source)}
    return sorted(s for s in found if s in rank and rank[s] > rank[module])


def test_the_checker_finds_a_planted_backward_import() -> None:
    src = "def f():\n    from stoplens.pipeline.stage_causal import run_causal_suite\n"
    assert _later_stages("stage_models", src) == ["stage_causal"]
    assert _later_stages("orchestrator", src) == []


def test_every_pipeline_module_is_a_known_stage() -> None:
    found = {p.stem for p in PIPELINE_DIR.glob("*.py")} - {"__init__"}
    assert found == set(STAGES)


def test_pipeline_stages_import_only_earlier_stages() -> None:
    bad = {
        s: later
        for s in STAGES
        if (later := _later_stages(s, (PIPELINE_DIR / f"{s}.py").read_text(encoding="utf-8")))
    }
    assert not bad, f"a stage imports a later one: {bad}"


def test_report_and_pipeline_do_not_import_later_layers() -> None:
    bad = []
    for root, banned in ((REPORT_DIR, ("stoplens.pipeline", "stoplens.cli")),
                         (PIPELINE_DIR, ("stoplens.cli",))):  # fmt: skip
        for path in sorted(root.rglob("*.py")):
            hits = [m for m in _imports(path.read_text(encoding="utf-8")) if m.startswith(banned)]
            bad += [f"{path.relative_to(root.parent)}: {m}" for m in hits]
    assert not bad, bad
