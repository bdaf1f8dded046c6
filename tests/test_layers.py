"""The architecture rules of DESIGN.md, checked on the source: imports only point down,
heavy dependencies load lazily, the agent is self-contained, importing has no side effects."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"farm": 1, "predictors": 2, "nas": 3, "compress": 4}
HEAVY = {"torch", "paramiko", "adb_shell", "serial", "ray", "ai_edge_litert", "tflite_runtime", "pyarrow", "xgboost"}


def _modules(pkg: str):
    for path in sorted((ROOT / pkg).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _top_level_imports(tree: ast.Module):
    """Imports executed at import time (module body, not inside functions)."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def _all_imports(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


@pytest.mark.parametrize("pkg", sorted(LAYER))
def test_imports_only_point_down(pkg):
    for path, tree in _modules(pkg):
        for name, level in _all_imports(tree):
            top = name.split(".")[0]
            if level == 0 and top in LAYER:
                assert LAYER[top] <= LAYER[pkg], f"{path.relative_to(ROOT)} imports {name} (upward)"


def test_farm_loads_heavy_dependencies_lazily():
    for path, tree in _modules("farm"):
        for name, level in _top_level_imports(tree):
            assert level or name.split(".")[0] not in HEAVY, f"{path.relative_to(ROOT)} imports {name} at module level"


def test_agent_is_self_contained():
    """farm/agent is copied to boards alone: it may import only itself, stdlib, numpy and runtimes."""
    for path, tree in _modules("farm/agent"):
        for name, level in _all_imports(tree):
            if level == 0:
                assert name.split(".")[0] != "farm", f"{path.relative_to(ROOT)} imports {name}"
            else:
                assert level == 1, f"{path.relative_to(ROOT)} reaches outside the agent package"


def test_import_has_no_side_effects(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    code = "import farm, farm.cli, farm.store.sqlite, farm.scheduler.core, farm.devices, predictors, nas, compress; import sys; " \
           "print(sorted(m for m in ('torch', 'onnxruntime', 'ai_edge_litert', 'paramiko') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert list(home.iterdir()) == [] and list(tmp_path.iterdir()) == [home]


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    """Counting imports inside functions; a package's ``__init__`` re-exporting its own
    submodules is not a cycle (the edge between a package and its descendants is left out)."""
    import grimp

    sys.setrecursionlimit(10000)
    graph = grimp.build_graph(*LAYER)
    edges = {m: {t for t in graph.find_modules_directly_imported_by(m)
                 if t in graph.modules and not t.startswith(m + ".") and not m.startswith(t + ".")}
             for m in graph.modules}
    assert _strongly_connected(edges) == []
