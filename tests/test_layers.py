"""The house's shape: every module imports only from its own package or from the layers below it, and no block of
six identical lines appears twice in ``src/`` (a copy is how the three pipelines drifted apart)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src" / "mudjacking"

# lowest first; packages in one layer may not import each other
LAYERS = [
    {"errors", "sharding"},
    {"batches", "progress", "timing", "devices", "geometry", "jsonfiles", "lora", "memory"},
    {"data"},
    {"encoders"},
    {"outputs"},
    {"losses", "triggers", "pretraining", "checks", "checkpoints"},
    {"patching", "fixed_bugs"},
    {"recipes"},
    {"defences", "attacks", "evaluation", "report"},
    {"api"},
    {"pipeline"},
    {"experiments"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
LAYER = {name: index for index, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """``mudjacking.triggers.text`` -> ``triggers``: the package (or top-level module) a layer names."""
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mudjacking."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mudjacking.")}
    return found


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts): path
        for path in SOURCE.rglob("*.py")
        if path.name != "__init__.py" or path.parent != SOURCE
    }


def test_every_module_has_a_layer():
    assert {_unit(module) for module in _modules()} <= set(LAYER)


def test_imports_point_down_only():
    upward = []
    for module, path in _modules().items():
        own = _unit(module)
        for imported in _imports(path):
            other = _unit(imported)
            if other != own and LAYER[other] >= LAYER[own]:
                upward.append(f"{module} imports {imported}")
    assert not upward, "\n".join(sorted(upward))


def test_the_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from mudjacking.demo import run_demo\n")
    assert LAYER[_unit("mudjacking.patching")] < LAYER[_unit(next(iter(_imports(bad))))]


def _statement(line: str) -> bool:
    """A line that does something: not a parameter or import list entry, a bracket or a docstring quote."""
    return len(line) > 12 and not line.endswith((",", "(")) and not line.startswith((")", "from ", "import "))


def _blocks(size: int = 6) -> dict[tuple[str, ...], list[str]]:
    """Every run of ``size`` non-blank lines (stripped) holding at least three statements, where it occurs (a shared
    signature or import list is a declaration, not a copy)."""
    seen: dict[tuple[str, ...], list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for start in range(len(lines) - size + 1):
            block = tuple(lines[start : start + size])
            if sum(map(_statement, block)) >= 3:
                seen.setdefault(block, []).append(f"{path.relative_to(SOURCE)}:{start}")
    return seen


def test_no_block_of_six_lines_appears_twice():
    repeated = {block: where for block, where in _blocks().items() if len(where) > 1}
    assert not repeated, "\n\n".join(" ".join(where) + "\n" + "\n".join(block) for block, where in repeated.items())
