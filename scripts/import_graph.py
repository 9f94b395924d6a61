#!/usr/bin/env python3
"""Print ftune's import graph between its layers, and fail on cycles, upward edges and
private imports across modules.

    python scripts/import_graph.py [--modules]

Layers, lowest first; a module may import from its own layer and the layers below it:

    errors, discovery -> runs -> config -> data -> models -> methods -> tracking -> settings -> training
        -> eval -> recipes -> comparison -> tuning -> api -> cli -> __main__ (``python -m ftune``)

``config`` is the typed schema; ``settings`` resolves YAML and overrides into it and checks
names against the registries (formats, templates, models, techniques), so it sits above them.
``training`` is the training engine; ``recipes`` are whole jobs, which train and then evaluate.
``tracking`` (experiment trackers) sits below ``settings``, which checks ``train.report_to``
against its registry.

Every import counts, also those inside functions (ftune imports lazily to start fast).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ftune"
LAYERS = ["errors", "discovery", "runs", "config", "data", "models", "methods", "tracking", "settings", "training", "eval", "recipes", "export", "serving",
          "comparison", "tuning", "api", "cli", "__main__"]
RANK = {name: i for i, name in enumerate(LAYERS)}
# `ftune/__init__.py` re-exports the api lazily; it is the package's front door, not a layer.
FRONT_DOOR = "ftune"


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every ftune import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("ftune")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([target] if target else []))
            if target.startswith("ftune"):
                found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def check(show_modules: bool = False) -> int:
    files = {module_name(p): p for p in SOURCE.rglob("*.py")}
    problems: list[str] = []
    layer_edges: dict[tuple[str, str], int] = defaultdict(int)
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in sorted(files.items()):
        source_layer = layer_of(module)
        for target, names, line in imports_of(path, module):
            # `from ftune.x import y` may name a submodule y
            targets = [f"{target}.{n}" if f"{target}.{n}" in files else target for n in names] or [target]
            for resolved in targets:
                if resolved != module:
                    graph[module].add(resolved)
            target_layer = layer_of(target)
            where = f"{path.relative_to(SOURCE.parent.parent)}:{line}"
            if source_layer and target_layer and source_layer != target_layer:
                layer_edges[(source_layer, target_layer)] += 1
                if source_layer not in RANK or target_layer not in RANK:
                    problems.append(f"{where}: layer not in LAYERS: {source_layer} -> {target_layer}")
                elif RANK[target_layer] > RANK[source_layer]:
                    problems.append(f"{where}: upward import {module} -> {target}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target.rsplit(".", 1)[0] != module.rsplit(".", 1)[0]:
                problems.append(f"{where}: private name {', '.join(private)} imported from {target}")
            if source_layer is None and module != FRONT_DOOR:
                problems.append(f"{where}: module outside every layer: {module}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]

    print("layer edges (imports from -> to):")
    for (source, target), count in sorted(layer_edges.items(), key=lambda e: (RANK.get(e[0][0], 99), e[0][1])):
        direction = "ok" if RANK.get(target, 99) < RANK.get(source, -1) else "UPWARD"
        print(f"  {source:>8} -> {target:<8} {count:4d}  {direction}")
    if show_modules:
        for module in sorted(graph):
            print(f"{module}: {', '.join(sorted(graph[module]))}")
    for problem in problems:
        print(problem)
    print(f"{len(files)} modules, {sum(len(v) for v in graph.values())} module imports, {len(problems)} problems")
    return 1 if problems else 0


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in list(graph):
        if node not in index:
            visit(node)
    return components


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="also print every module's ftune imports")
    sys.exit(check(parser.parse_args().modules))
