"""The layout is the architecture: imports point one way and never in a circle.

A static AST walk, so type-only imports (`if TYPE_CHECKING:`) and imports inside functions count too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "ml", "shadow", "bridge", "executor", "stats", "hummingbot_scripts", "offline")

# Higher layers may import lower ones, never the reverse; one layer's groups do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bridge", "controller.config_base", "stats"),
    ("controller.data",),
    ("controller.scan",),
    ("controller.ops", "ml", "shadow"),
    ("controller.config",),
    ("controller.wiring",),
    ("controller.cli",),
    ("controller.__main__", "offline"),
)

# What Hummingbot's image has, plus bridge and executor, which the compose file mounts beside the script.
SCRIPT_ALLOWED = {"hummingbot", "pydantic", "requests", "bridge", "executor"}

# The executor package, lowest first: a module imports only modules of an earlier tier (and bridge), as
# Hummingbot's strategy_v2 keeps its models below its executors and its executors below the orchestrator.
EXECUTOR_TIERS: tuple[tuple[str, ...], ...] = (
    ("executor.config",),
    ("executor.models",),
    ("executor.pricing", "executor.outbox"),
    ("executor.worker",),
    ("executor.reporting", "executor.market"),
    ("executor.positions", "executor.gates"),
    ("executor.health",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, module: str, known: set[str]) -> list[tuple[str, int]]:
    """Every module of ours that `path` imports, resolved to the longest known module name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            candidate = name
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != module:
                targets.append((candidate, node.lineno))
    return targets


def _graph() -> dict[str, list[tuple[str, int]]]:
    sources = _sources()
    known = set(sources)
    graph = {}
    for module, path in sources.items():
        seen: dict[str, int] = {}
        for target, line in _imports(path, module, known):
            seen.setdefault(target, line)
        graph[module] = sorted(seen.items())
    return graph


def _layer(module: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best[1])):
                best = (rank, group)
    return best


def _cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere() -> None:
    assert _cycles(_graph()) == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    graph = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 3)], "d": [("a", 1)]}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_module_has_a_layer() -> None:
    missing = [m for m in _graph() if m.split(".")[0] not in ("hummingbot_scripts", "executor") and _layer(m) is None
               and m not in ("controller", "ml", "shadow", "offline", "bridge", "stats")]
    assert missing == []


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in _graph().items():
        here = _layer(module)
        if here is None:
            continue
        for target, line in targets:
            there = _layer(target)
            if there is None or there[1] == here[1]:
                continue
            if there[0] >= here[0]:
                wrong.append(f"{module}:{line} imports {target} ({there[1]} is not below {here[1]})")
    assert wrong == []


def test_the_executor_package_imports_run_one_way() -> None:
    tier = {module: rank for rank, modules in enumerate(EXECUTOR_TIERS) for module in modules}
    graph = _graph()
    assert sorted(m for m in graph if m.startswith("executor.")) == sorted(tier), "a module without a tier"
    wrong = []
    for module, rank in tier.items():
        for target, line in graph[module]:
            if target.startswith("executor") and tier.get(target, rank) >= rank:
                wrong.append(f"{module}:{line} imports {target} (not a lower tier)")
            elif not target.startswith(("executor", "bridge")):
                wrong.append(f"{module}:{line} imports {target} (only bridge is mounted beside it)")
    assert wrong == []


def test_only_the_script_imports_the_executor_package() -> None:
    wrong = [f"{m}:{line} imports {t}" for m, targets in _graph().items()
             if not m.startswith(("executor", "hummingbot_scripts")) for t, line in targets if t.startswith("executor")]
    assert wrong == []


@pytest.mark.parametrize("package", ["hummingbot_scripts", "executor"])
def test_the_hummingbot_side_imports_only_what_the_official_image_has(package: str) -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            wrong += [f"{path.name}:{node.lineno} imports {r}" for r in roots if r not in stdlib | SCRIPT_ALLOWED]
    assert wrong == []


@pytest.mark.parametrize("package", ["bridge"])
def test_bridge_imports_nothing_of_the_controller(package: str) -> None:
    graph = _graph()
    wrong = [f"{m} imports {t}" for m, targets in graph.items() if m.startswith(package)
             for t, _ in targets if not t.startswith(package)]
    assert wrong == []
