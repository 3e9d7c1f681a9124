"""No import circle anywhere in the project's code (a module importing one that imports it
back, directly or through others), imports inside functions included; and the workstation
packages depend one way: the local stack uses the warehouse and the console, never the
other way round, so either can be read, tested and moved without the emulators."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("functions", "shared")


def _modules() -> dict[str, Path]:
    found = {"main": REPO / "main.py"}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's __init__ is not counted as
    imported by its own modules' imports of each other)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def test_no_import_circle():
    try:
        tuple(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail("import circle (each imports the next): " + " -> ".join(reversed(exc.args[1])))


@pytest.mark.parametrize("package", ["functions.warehouse", "functions.console"])
def test_warehouse_and_console_do_not_depend_on_the_local_stack(package):
    borrowed = {(module, target) for module, targets in _graph().items() if module.startswith(package)
                for target in targets if target.startswith("functions.local")}
    assert not borrowed, sorted(borrowed)


def test_the_graph_sees_real_imports():
    """The checks above would pass on an empty graph: make sure it is not one."""
    graph = _graph()
    assert "functions.warehouse.store" in graph["functions.warehouse.sink"]
    assert "functions.local.stack" in graph["functions.local.commands"]  # an import inside a function
