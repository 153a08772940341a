"""The import-layer contract: no stoplens module imports from a later stage.

Layers, earliest first (a module may import from its own layer and earlier ones only):

0. foundation: ``stoplens`` (the package ``__init__``), ``errors``, ``io``, ``progress``,
   ``rundir``, ``versions`` — no science, used by every stage;
1. ``data`` — the trigger, prompts, records, splits;
2. ``models`` — architecture lookups, loading, chat ids, the trigger token, random and planted
   models. Training loads a base through it, so it sits *below* ``train`` here although the
   data flows data → train → models (train writes the models that ``models`` loads);
3. ``train`` — fine-tuning;
4. ``embedded`` — the embedded offline pair, which runs ``train`` (a stage of its own);
5. ``capture`` — hooks, pairs, batched forward passes, the stop readout;
6. ``interventions`` — directional edits and their artifacts;
7. ``analyses`` — the science on captured activations;
8. ``report`` — figures, verdicts, markdown and HTML from results;
9. ``evaluate`` — behaviour metrics. It runs on loaded models like the analyses, reads the
   decision position through ``capture``, and uses the shared statistics
   (``analyses.stats``: Wilson intervals) and the behaviour table (``report.behaviour``) that
   the report also shows, so it sits after them;
10. ``pipeline`` — the `run` orchestration;
11. ``cli`` — the typer app over all of it.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``. Violations
that exist today in code owned elsewhere are listed in `KNOWN` with their owner; the test
fails on any new violation and on a listed one that is gone (so the list shrinks as they are
fixed). `test_a_planted_violation_is_caught` checks the checker on a fake package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stoplens"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "io", "progress", "rundir", "versions"),
    ("data",),
    ("models",),
    ("train",),
    ("embedded",),
    ("capture",),
    ("interventions",),
    ("analyses",),
    ("report",),
    ("evaluate",),
    ("pipeline",),
    ("cli",),
)

# (importer, imported) -> who owns the fix
KNOWN: dict[tuple[str, str], str] = {}


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/a/b.py`` → ``pkg.a.b``; ``root/pkg/a/__init__.py`` → ``pkg.a``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports (any depth of the syntax tree), absolute, resolved
    against ``root`` (the package folder) for relative imports and ``from pkg import sub``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            for a in node.names:  # `from pkg import submodule`
                sub = f"{target}.{a.name}"
                rel = Path(*sub.split(".")[1:])
                if (root / rel).is_dir() or (root / rel).with_suffix(".py").is_file():
                    out.add(sub)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of the same package it imports."""
    pkg = root.name
    graph = {}
    for path in sorted(root.rglob("*.py")):
        mods = imports_of(path, root)
        graph[module_name(path, root)] = {m for m in mods if m == pkg or m.startswith(pkg + ".")}
    return graph


def stage(module: str) -> str:
    """``stoplens.capture.extract`` → ``capture``; the package itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str, layers=LAYERS) -> int:
    s = stage(module)
    for i, names in enumerate(layers):
        if s in names:
            return i
    raise KeyError(f"{module}: stage {s!r} has no layer; add it to LAYERS (and the docstring)")


def violations(graph: dict[str, set[str]], layers=LAYERS) -> set[tuple[str, str]]:
    """(importer, imported) pairs where the imported module sits in a later layer."""
    return {
        (mod, dep)
        for mod, deps in graph.items()
        for dep in deps
        if layer_of(dep, layers) > layer_of(mod, layers)
    }


def test_every_stage_has_a_layer():
    for mod in import_graph(PACKAGE):
        layer_of(mod)


def test_no_module_imports_from_a_later_stage():
    found = violations(import_graph(PACKAGE))
    new = sorted(found - set(KNOWN))
    assert not new, "imports from a later stage:\n" + "\n".join(f"{a} -> {b}" for a, b in new)
    gone = sorted(set(KNOWN) - found)
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def test_a_planted_violation_is_caught(tmp_path):
    """A fake package: data imports models inside a function, models imports data (fine),
    capture imports train through a relative import and `from pkg import sub` (fine), and
    train imports capture under TYPE_CHECKING (a violation: type-only imports count)."""
    root = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "data/__init__.py": "",
        "data/x.py": "def f():\n    from pkg.models import y\n    return y\n",
        "models/__init__.py": "",
        "models/y.py": "import pkg.data.x\n",
        "train/__init__.py": "",
        "train/t.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..capture import c\n"
        ),
        "capture/__init__.py": "from pkg import train\n",
        "capture/c.py": "from ..train.t import f\nfrom . import c\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    layers = (("",), ("data",), ("models",), ("train",), ("capture",))
    graph = import_graph(root)
    assert graph["pkg.capture.c"] >= {"pkg.train.t", "pkg.capture.c"}
    assert graph["pkg.capture"] == {"pkg", "pkg.train"}
    assert violations(graph, layers) == {
        ("pkg.data.x", "pkg.models"),
        ("pkg.data.x", "pkg.models.y"),
        ("pkg.train.t", "pkg.capture"),
        ("pkg.train.t", "pkg.capture.c"),
    }
    with pytest.raises(KeyError, match="no layer"):
        layer_of("pkg.plots.p", layers)
