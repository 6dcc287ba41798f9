"""The import layering of the ``mars`` package, read from the source (every import, those inside functions too).

    core      advantage, anchors, rewards, data, processing, evaluation, models, config, perception, training (the
              step and its helpers): never imports an engine, the transformers layer above it, or a command
    hf        transformers in this process, below both engines: never imports an engine
    engines   local and verl never import each other; only the registry (mars/engines/__init__.py) names both
    and no import circle between the parts of the package
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mars"
CORE = ("advantage", "anchors", "rewards", "data", "processing", "evaluation", "models", "config", "training",
        "perception")
ABOVE_CORE = ("mars.engines", "mars.hf", "mars.compare", "mars.cli", "mars.train_cli", "mars.verl_plugin",
              "mars.main_ppo", "mars.inference", "mars.per_source", "mars.merge", "mars.doctor")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``mars`` module a file imports (``from mars.x import y`` counts as mars.x and mars.x.y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "mars" or name.startswith("mars.")}


def part_of(module: str) -> str:
    """The part of the package a module belongs to: ``mars.<package>``, each engine on its own, or the module."""
    parts = module.split(".")
    if parts[:2] == ["mars", "engines"] and len(parts) > 2 and parts[2] in ("local", "verl"):
        return ".".join(parts[:3])
    return ".".join(parts[:2])


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def existing(module: str) -> bool:
    return module in GRAPH


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_scan_sees_the_package():
    assert "mars.training.step" in GRAPH and "mars.engines.local.local_engine" in GRAPH
    assert "mars.training.interface" in GRAPH["mars.training.step"]
    # an import inside a function counts too
    assert "mars.engines.verl.ray_trainer" in GRAPH["mars.engines.verl.launch"]


@pytest.mark.parametrize("package", CORE)
def test_the_core_never_imports_an_engine_or_anything_above_it(package):
    bad = {module: sorted(i for i in imported if within(i, ABOVE_CORE))
           for module, imported in GRAPH.items() if within(module, [f"mars.{package}"])}
    assert not {m: i for m, i in bad.items() if i}


def test_the_transformers_layer_never_imports_an_engine():
    bad = {m: sorted(i for i in imported if within(i, ["mars.engines"]))
           for m, imported in GRAPH.items() if within(m, ["mars.hf"])}
    assert not {m: i for m, i in bad.items() if i}


@pytest.mark.parametrize(("engine", "other"), [("local", "verl"), ("verl", "local")])
def test_the_engines_never_import_each_other(engine, other):
    bad = {m: sorted(i for i in imported if within(i, [f"mars.engines.{other}"]))
           for m, imported in GRAPH.items() if within(m, [f"mars.engines.{engine}"])}
    assert not {m: i for m, i in bad.items() if i}


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, as the list of its nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_circle_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_between_the_parts_of_the_package():
    parts: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        source = part_of(module)
        for target in imported:
            if not existing(target):  # `from mars.x import name`: the name is not a module
                continue
            if part_of(target) != source and part_of(target) != "mars":
                parts.setdefault(source, set()).add(part_of(target))
    assert find_circle(parts) is None
