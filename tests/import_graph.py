"""The import graph of maintd's own modules, and the rules it must keep (ARCHITECTURE.md).

Every import counts, the ones inside functions too (a function-local import still ties
two modules together; it only hides a cycle). Run ``python -m tests.import_graph`` (``make
lint`` does): it prints each cycle and each import that climbs the layers, and exits 1 if
there is any. ``tests/test_architecture.py`` runs the same checks and proves they fail on a
deliberately added cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("workers", "tasks")
MODULES = ("beat_schedule",)

# Lowest first. A module may import modules of its own layer or of a lower one, never higher.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("config", ("workers.errors", "workers.config", "beat_schedule")),
    ("doors", ("workers.doors",)),
    ("records", ("workers.records",)),
    ("catalog", ("workers.catalog", "workers.routing", "workers.schedule", "workers.alerts")),
    ("domain", ("tasks.core",)),
    ("gates", ("workers.gates",)),
    ("celery wiring", ("workers.app", "workers.taskdef", "workers.dispatch", "workers.verdict",
                       "workers.beat_scheduler")),
    ("task modules", ("tasks",)),
    ("entry points", ("workers.cli", "workers.processes", "workers")),
)
CELERY = ("celery", "kombu", "billiard", "flower")


def module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_of(path, root)] = path
    for name in MODULES:
        if (root / f"{name}.py").exists():
            found[name] = root / f"{name}.py"
    return found


def _resolve(module: str, level: int, name: str | None, is_package: bool) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([name] if name else [])])


def imports_of(module: str, path: Path, modules: Iterable[str] = ()) -> set[str]:
    """Every module name ``module`` imports, anywhere in its body. ``from pkg import name``
    counts ``pkg.name`` when that is one of ``modules`` (a submodule), else ``pkg``; as for
    ``import pkg.sub``, the parent package that Python initialises first is not counted."""
    known = set(modules)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module → the project modules it imports (names that are not modules are dropped)."""
    files = source_files(root)
    return {m: {i for i in imports_of(m, p, files) if i in files and i != m} for m, p in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(module: str) -> int:
    best, depth = len(LAYERS) - 1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if prefix == "tasks":  # the task modules: tasks/<area>.py, not the core below them
                matches = module == "tasks" or (module.startswith("tasks.") and not module.startswith("tasks.core"))
            if matches and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer into a higher one, as ``a (layer) -> b (layer)``."""
    bad = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(source):
                bad.append(f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    return bad


def celery_importers(root: Path = ROOT) -> set[str]:
    """Modules that import Celery or its libraries (kombu, billiard, flower) directly."""
    files = source_files(root)
    return {m for m, p in files.items()
            if any(i.split(".")[0] in CELERY for i in imports_of(m, p))}


def problems(root: Path = ROOT) -> list[str]:
    edges = graph(root)
    out = [f"import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
    out += [f"import climbs the layers: {line}" for line in upward_imports(edges)]
    below = {m for m in celery_importers(root) if layer_of(m) < layer_of("workers.app")}
    out += [f"Celery imported below the Celery wiring: {m}" for m in sorted(below)]
    return out


def main(argv: Iterable[str] = ()) -> int:
    found = problems(Path(next(iter(argv), ROOT)))
    for line in found:
        print(line)
    print(f"import graph: {len(found)} problem(s)" if found else "import graph: no cycles, layers kept")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
