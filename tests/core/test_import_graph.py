"""The package's modules import each other without a cycle.

A cycle works only while every module in it is imported in one particular order (or one side
defers its import into a function), so it breaks when a caller imports the other end first.
Checked on the source: every import statement, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import plast_plugin

PACKAGE = Path(plast_plugin.__file__).parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules a source file imports (``from pkg import mod`` names ``pkg.mod``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & modules


def import_graph() -> nx.DiGraph:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph.add_edges_from((module, target) for target in _imported(tree, set(paths)) if target != module)
    return graph


def test_the_package_import_graph_has_no_cycle():
    cycles = [" -> ".join(cycle + cycle[:1]) for cycle in nx.simple_cycles(import_graph())]
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_imports_inside_functions_and_from_package_imports_are_edges():
    # A deferred import still closes a cycle (it only hides it until the function runs).
    source = "def pick():\n    from plast_plugin.models import probe_llava_next\n    import plast_plugin.core.probe\n"
    modules = {"plast_plugin.models", "plast_plugin.models.probe_llava_next", "plast_plugin.core.probe"}
    assert _imported(ast.parse(source), modules) == modules


def test_the_probe_families_are_imported_one_way():
    graph = import_graph()
    assert graph.has_edge("plast_plugin.models.probe_models", "plast_plugin.models.probe_llava_next")
    assert not nx.has_path(graph, "plast_plugin.models.probe_llava_next", "plast_plugin.models.probe_models")
