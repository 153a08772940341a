"""`stoplens data`: build the knowledge documents, behavioral records, splits and contrast
pairs, write them atomically, and print a summary. The work is done by `stoplens.data`; this
module parses options, decides the output directory and prints. No torch import.

Owns: the command's options and its summary print. Must not: build data itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stoplens.cli import _common as common

if TYPE_CHECKING:
    from stoplens.data import DataBundle

EPILOG = """\
Examples:

  stoplens data    (writes runs/default/data)

  stoplens data --run-dir runs/exp1 --seed 3

  stoplens data --out /tmp/stopdata --trigger '$HALT' --overwrite

  stoplens data --n-prompts 200 --control-kinds word,near_miss

Writes shutdown_dataset.jsonl (documents), behavioral_dataset.jsonl and
behavioral_{train,val,test}.jsonl (chats), contrast_pairs_{train,val,test}.jsonl and
manifest.json (config, counts, diversity, sha256 of every file).
"""


def _parse_kinds(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


Out = Annotated[
    Path | None,
    typer.Option("--out", help="Output directory (default: <run-dir>/data).", show_default=False),
]
Seed = Annotated[int, typer.Option("--seed", help="Same seed gives byte-identical files.")]
NDocuments = Annotated[int, typer.Option("--n-documents", help="Knowledge-regime documents.")]
NPrompts = Annotated[
    int,
    typer.Option("--n-prompts", help="Distinct underlying user prompts (split train/val/test)."),
]
ControlKinds = Annotated[
    str, typer.Option("--control-kinds", help="Comma-separated contrast-pair control kinds.")
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace a non-empty output directory.")
]


def register(app: typer.Typer) -> None:
    @app.command("data", epilog=EPILOG)
    def data_cmd(
        out: Out = None,
        run_dir: common.RunDirFlag = Path("runs/default"),
        trigger: common.TriggerFlag = "$STOP",
        seed: Seed = 0,
        n_documents: NDocuments = 500,
        n_prompts: NPrompts = 400,
        control_kinds: ControlKinds = "word,near_miss,random_word",
        overwrite: Overwrite = False,
    ) -> None:
        """Build the $STOP datasets: knowledge documents, behavioral chat records (triggers,
        clean prompts, near misses, distractors) split by prompt, and contrast pairs."""
        from stoplens.data import DataConfig, build_datasets, write_datasets
        from stoplens.rundir import RunDir

        config = DataConfig(
            trigger=trigger,
            seed=seed,
            n_documents=n_documents,
            n_prompts=n_prompts,
            control_kinds=_parse_kinds(control_kinds),
        )
        config.validate()
        target = out if out is not None else RunDir(run_dir).data
        _refuse_non_empty(target, overwrite)
        bundle = build_datasets(config)
        written = write_datasets(bundle, target, overwrite=overwrite)
        print_summary(bundle, written)


def _refuse_non_empty(path: Path, overwrite: bool) -> None:
    """Fail before the (second-long) build if the output directory cannot be used."""
    from stoplens.errors import DataError

    if overwrite or not path.exists():
        return
    if not path.is_dir():
        raise DataError(f"output path {path} is a file; choose a directory with --out")
    if any(path.iterdir()):
        raise DataError(f"output directory {path} is not empty; pass --overwrite or choose another")


def print_summary(bundle: DataBundle, out_dir: Path) -> None:
    """Readable summary of what was written (rich tables on stdout)."""
    from rich.console import Console

    from stoplens.data.build import MANIFEST_FILE

    console = Console()
    stats = bundle.stats
    manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    console.print(_files_table(manifest, out_dir))
    console.print(_kinds_table(stats))
    console.print(_figures_table(stats, bundle.config.trigger))
    test_min = min(stats["pairs"]["test"]["by_control_kind"].values(), default=0)
    if test_min < 64:
        console.print(
            f"note: only {test_min} test pairs per control kind; the analyses want >= 64 "
            "(raise --n-prompts)"
        )


def _files_table(manifest: dict, out_dir: Path):
    """One row per written file: its records and size (from the manifest)."""
    from rich.table import Table

    files = Table(title=f"stoplens data -> {out_dir}", title_justify="left")
    files.add_column("file")
    files.add_column("records", justify="right")
    files.add_column("size", justify="right")
    for name, meta in manifest["files"].items():
        files.add_row(name, str(meta["records"]), f"{meta['bytes'] / 1024:.0f} KiB")
    return files


def _kinds_table(stats: dict):
    """Behavioral records counted by trigger placement x record kind, over all splits."""
    from rich.table import Table

    from stoplens.data.config import KINDS, SPLITS, TRIGGER_PLACEMENTS

    placements = [*TRIGGER_PLACEMENTS, "none"]
    kinds = Table(title="behavioral records: placement x kind (all splits)", title_justify="left")
    kinds.add_column("placement")
    for kind in KINDS:
        kinds.add_column(kind, justify="right")
    kinds.add_column("total", justify="right")
    for p in placements:
        row = [sum(stats["counts"][s][kind].get(p, 0) for s in SPLITS) for kind in KINDS]
        kinds.add_row(p, *map(str, row), str(sum(row)))
    totals = [stats["kinds"].get(kind, 0) for kind in KINDS]
    kinds.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    return kinds


def _figures_table(stats: dict, trigger: str):
    """The trigger, prompt and record counts per split, diversity figures and contrast pairs."""
    from rich.table import Table

    from stoplens.data.config import SPLITS

    div = stats["diversity"]
    figures = Table(title="prompts, pairs and diversity", title_justify="left", show_header=False)
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    dp = stats["distinct_prompts"]
    rec = stats["records"]
    figures.add_row("trigger", trigger)
    figures.add_row(
        "distinct prompts (train/val/test)", f"{dp['all']} ({dp['train']}/{dp['val']}/{dp['test']})"
    )
    figures.add_row(
        "records (train/val/test)", f"{rec['all']} ({rec['train']}/{rec['val']}/{rec['test']})"
    )
    figures.add_row("trigger share of records", f"{stats['trigger_share']:.1%}")
    figures.add_row("topics", str(len(stats["topics"])))
    figures.add_row("distinct answers", str(stats["distinct_answers"]))
    figures.add_row("answers: distinct 5-gram ratio", f"{div['answers_5gram_ratio']:.3f}")
    figures.add_row("documents", str(stats["documents"]["count"]))
    figures.add_row("documents: distinct 5-gram ratio", f"{div['documents_5gram_ratio']:.3f}")
    figures.add_row("documents: normal-behaviour share", f"{div['documents_normal_share']:.1%}")
    figures.add_row("near-miss forms", " ".join(stats["near_miss_forms"]))
    for s in SPLITS:
        by_kind = stats["pairs"][s]["by_control_kind"]
        figures.add_row(f"contrast pairs ({s})", ", ".join(f"{k} {n}" for k, n in by_kind.items()))
    return figures
