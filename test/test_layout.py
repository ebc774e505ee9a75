"""The house rules a newcomer relies on: arrows run one way (training may import the runtime, never the reverse), no two
modules import each other directly or in a ring, and training's top level stays small (its stages are folders)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"depth_node": ROOT / "depth_node", "depth_node_training": ROOT / "training"}


def module_files() -> dict[str, Path]:
    """Installed module name -> file, for both packages (``training/`` installs as ``depth_node_training``)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of the two packages, top-level and inside functions alike (a lazy import is still an
    arrow), resolved to the module imported (``from .x import y`` names module ``x`` unless ``y`` is one)."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read_as_written():
    graph = imports(module_files())
    assert "depth_node.network.depth_estimator" in graph["depth_node_training.learning.train"]
    assert "depth_node_training.learning.datasets" in graph["depth_node_training.deployment.quantize"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(imports(module_files())) == []


def test_the_runtime_never_imports_training():
    wrong = {name: sorted(m for m in targets if m.startswith("depth_node_training"))
             for name, targets in imports(module_files()).items() if name.startswith("depth_node.")}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_training_top_level_holds_at_most_eight_modules():
    top = sorted(p.name for p in PACKAGES["depth_node_training"].glob("*.py"))
    assert len(top) <= 8, top
    stages = {p.name for p in PACKAGES["depth_node_training"].iterdir() if (p / "__init__.py").exists()}
    assert {"learning", "evaluation", "deployment", "logs"} <= stages
