"""A request's trip from the route to the engine goes down, never back up: each module of
the serving path imports only modules of lower layers (and shared/, the engine). Two
modules of one layer (the trigger adapters) never borrow from each other."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Highest first. A module may import from the layers below its own only.
LAYERS = [
    ["main"],
    ["functions.app"],
    ["functions.handlers"],
    ["functions.events"],
    ["functions.storage_trigger", "functions.pubsub_trigger", "functions.http_trigger", "functions.bigquery_trigger",
     "functions.service"],
    ["functions.answers", "functions.delivery"],
    ["functions.parsing", "functions.routes", "functions.dedup", "functions.upload_page", "functions.runtime"],
]
LAYER_OF = {module: depth for depth, layer in enumerate(LAYERS) for module in layer}


def _imports(module: str) -> set[str]:
    """Every project module `module` imports, at any depth of its code (the command-line branch of
    main.py aside: `python main.py ...` is the tooling, not the serving path)."""
    path = REPO / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tree.body = [node for node in tree.body if not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("functions.") or name == "main"}


@pytest.mark.parametrize("module", sorted(LAYER_OF))
def test_imports_go_down(module):
    for imported in _imports(module):
        if imported in LAYER_OF:
            assert LAYER_OF[imported] > LAYER_OF[module], f"{module} imports {imported}: not a lower layer"
        else:  # a name imported from a module (functions.x.NAME) or a package outside the serving path
            parent = imported.rpartition(".")[0]
            assert parent in LAYER_OF and LAYER_OF[parent] > LAYER_OF[module], \
                f"{module} imports {imported}: outside the serving path, or not a lower layer"


def test_every_serving_module_has_a_layer():
    """A new module under functions/ joins a layer here or is tooling (a package of its own)."""
    tooling = {"functions.cli", "functions.cli_args", "functions.cli_output", "functions.server"}
    modules = {f"functions.{path.stem}" for path in (REPO / "functions").glob("*.py") if path.stem != "__init__"}
    assert modules - tooling == set(LAYER_OF) - {"main"}
