"""The data stage's shape: its modules import each other one way only, every import at module
level (no function-level import that hides a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import stoplens.data

PACKAGE_DIR = Path(stoplens.data.__file__).parent


def _data_imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """``(module, node)`` for every import of a ``stoplens.data.*`` module in ``tree``."""
    out: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "stoplens.data":  # `from stoplens.data import facts`
                out += [(f"stoplens.data.{a.name}", node) for a in node.names]
            elif node.module.startswith("stoplens.data."):
                out.append((node.module, node))
        elif isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names if a.name.startswith("stoplens.data.")]
    return out


def _graph() -> dict[str, set[str]]:
    modules = {f"stoplens.data.{p.stem}": p for p in PACKAGE_DIR.glob("*.py")}
    modules.pop("stoplens.data.__init__")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {m for m, _ in _data_imports(tree) if m in modules and m != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_data_modules_import_each_other_without_cycles() -> None:
    graph = _graph()
    assert "stoplens.data.trigger" in graph and "stoplens.data.config" in graph
    assert "stoplens.data.trigger" in graph["stoplens.data.config"]
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])


def test_data_modules_import_the_data_stage_at_module_level_only() -> None:
    nested = []
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        nested += [
            f"{path.name}:{n.lineno} {m}" for m, n in _data_imports(tree) if id(n) not in top
        ]
    assert not nested, nested
