"""No import cycles between the modules of ``pds_kernel`` (the developers' guide asks for none).

The graph is read from the source: the imports a module makes when it loads (its top level, the
branches of a top-level ``if`` or ``try`` included; imports inside functions, which run later, and
``if TYPE_CHECKING:`` blocks excluded). ``from . import name`` is an edge to the submodule ``name``;
it does not count as an edge back to the package itself, which Python has already initialised.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pds_kernel"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path], node: ast.ImportFrom) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
    source = ".".join(p for p in (base, node.module or "") if p)
    targets = set()
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            targets.add(submodule)
        elif source in modules:
            targets.add(source)
    return targets


def _load_time_imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    targets: set[str] = set()
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        nested = isinstance(statement, ast.If | ast.Try)
        for node in (ast.walk(statement) if nested else [statement]):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.ImportFrom):
                targets |= _imported(module, path, modules, node)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in modules}
    return targets - {module}


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the list of its modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_modules_import_each_other_without_a_cycle():
    modules = _modules()
    graph = {module: _load_time_imports(module, path, modules) for module, path in modules.items()}
    assert sum(len(targets) for targets in graph.values()) > 300, "the import graph looks empty"
    cycle = _a_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _a_cycle({"a": {"b"}, "b": set()}) is None
