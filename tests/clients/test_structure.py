"""The shape of ``clients/``: its modules import one another one way (no cycle, ``TYPE_CHECKING`` imports
included), and never prefect nor the sandbox (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (a function body, an ``if TYPE_CHECKING:`` block)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path.name}: a relative import; clients import each other as clients.<module>")
    return found


def graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in CLIENTS.glob("*.py")}
    return {
        name: {imported.split(".")[1] for imported in imports(path) if imported.startswith("clients.")}
        for name, path in modules.items()
    }


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "rollout_follow" in edges["rollout"]
    assert "kubernetes_api" in edges["rollout_follow"]


def test_no_import_cycle_inside_clients() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(edges.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


@pytest.mark.parametrize("path", sorted(CLIENTS.glob("*.py")), ids=lambda path: path.name)
def test_clients_import_neither_prefect_nor_the_sandbox(path: Path) -> None:
    roots = {name.split(".")[0] for name in imports(path)}
    assert not roots & {"prefect", "sandbox", "flows", "blocks", "deployments"}
