"""The house rules of the package, read from its files: layers, one name per module, module size."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from conftest import BUNDLE_ROOT

ALLOWED = {
    "utils": {"utils"},
    "transforms": {"utils", "transforms"},
    "networks": {"utils", "networks"},
    "bundle": {"utils", "transforms", "networks", "bundle"},
    "scripts": {"utils", "transforms", "networks", "bundle", "scripts"},
}
"""Which sub-packages of ``nerveseg`` each one may import: dependencies point down, never up or sideways."""
MAX_LINES = 400


def _modules() -> list[tuple[str, Path]]:
    return [(layer, path) for layer in ALLOWED for path in sorted((BUNDLE_ROOT / layer).rglob("*.py"))]


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "nerveseg" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer, path", _modules(), ids=lambda value: getattr(value, "name", value))
def test_imports_point_down(layer, path):
    reached = _imported_layers(path) - ALLOWED[layer]
    assert not reached, f"{path.relative_to(BUNDLE_ROOT)} ({layer}) imports {sorted(reached)}"


def test_every_module_name_is_unique():
    names = Counter(path.name for _, path in _modules() if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(BUNDLE_ROOT)): n
        for _, path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_imports_are_seen():
    """The checker itself: it finds a reach upwards in a module that has one."""
    assert "bundle" in _imported_layers(BUNDLE_ROOT / "scripts" / "cli.py")
