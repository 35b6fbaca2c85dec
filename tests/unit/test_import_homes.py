"""Each shared name is imported from the one module that defines it.

A static AST walk over the project's code, like tests/unit/test_layout.py: a name reached through a module that
merely re-exports it leaves two homes, and a reader (or a rename) has to find both.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("controller", "ml", "shadow", "bridge", "offline", "hummingbot_scripts", "executor", "bench", "scripts",
        "tests")


def _imports_of(name: str) -> list[str]:
    """`path:line module` for every `from module import name` in the project."""
    found = []
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
    return found


def test_config_error_is_imported_from_where_it_is_defined_only() -> None:
    homes = {line.rsplit(" ", 1)[1] for line in _imports_of("ConfigError")}
    assert homes == {"controller.config_base"}, _imports_of("ConfigError")


def test_the_walk_sees_imports_of_config_error() -> None:
    # the assertion above holds trivially if the walk finds nothing: the CLI's modules do import it
    assert any(line.startswith("controller/cli/") for line in _imports_of("ConfigError"))


def _private_imports_across_packages() -> list[str]:
    """`path:line module.name` for every underscored name one top-level package imports from another."""
    found = []
    for top in CODE:
        if top == "tests":
            continue  # a unit test may pin a private helper of the module it tests
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not (isinstance(node, ast.ImportFrom) and node.module and not node.level):
                    continue
                source = node.module.split(".")[0]
                if source in CODE and source != top:
                    found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    return found


def test_no_package_imports_another_packages_private_names() -> None:
    assert _private_imports_across_packages() == []


def _test_module_imports() -> list[str]:
    """`path:line module` for every import of one test module by another (shared helpers belong in tests/support)."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                       else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in modules
                      if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    assert _test_module_imports() == []
