"""The package's layering, read from its source: the import graph has no cycles, the engine
(``nas/``) knows nothing of Lightning, the callback or the application, the graph layer
knows no search method, and no module grows past 400 lines without saying why.

Every ``import`` statement counts, wherever it stands: at module level, inside a function
(the lazy ``DNASCallback`` import) or under ``if TYPE_CHECKING:`` (a type-only import still
ties the two modules' designs together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lightning_dnas"
LONG = 400
# The phrase a long module's docstring must contain, followed by its reason.
LONG_REASON = "One file because"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names of everything ``path`` imports: package modules resolved to the
    longest known module, other packages to their top-level name."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "lightning_dnas":
                found.add(target.split(".")[0])
                continue
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: modules and third-party packages it imports}`` for the whole package."""
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_reader_sees_every_kind_of_import() -> None:
    """The parser itself, on modules known to import in each way."""
    graph = import_graph()
    assert "lightning_dnas.callback" in graph["lightning_dnas"]  # lazy, in a function
    assert "lightning_dnas.nas.methods" in graph["lightning_dnas"]  # relative
    assert "torch" in graph["lightning_dnas.nas.engine"]
    assert "lightning" in graph["lightning_dnas.app.phases"]


def test_no_import_cycles() -> None:
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()) or [])


def test_cycle_finder_finds_one() -> None:
    """The check can fail: a hand-made circle is found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("lightning_dnas.nas", ("lightning", "pytorch_lightning", "torchmetrics",
                                "lightning_dnas.callback", "lightning_dnas.app",
                                "lightning_dnas.stages", "lightning_dnas.restore",
                                "lightning_dnas.data", "lightning_dnas.zoo")),
        ("lightning_dnas.nas.graph", ("lightning_dnas.nas.pit", "lightning_dnas.nas.supernet",
                                      "lightning_dnas.nas.cost", "lightning_dnas.nas.engine",
                                      "lightning_dnas.nas.methods",
                                      "lightning_dnas.nas.costing")),
        ("lightning_dnas.nas.modules", ("lightning_dnas",)),
        ("lightning_dnas.callback", ("lightning_dnas.app",)),
    ],
)  # fmt: skip
def test_layers_import_only_downward(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{module} imports {dep}"
        for module, deps in import_graph().items()
        if module == layer or module.startswith(layer + ".")
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_lightning_is_imported_only_by_the_lightning_aware_parts() -> None:
    """The callback is the search's one Lightning-aware piece; data modules are
    LightningDataModules by nature and the application drives the Trainer."""
    aware = ("lightning_dnas.callback", "lightning_dnas.data", "lightning_dnas.app")
    users = sorted(m for m, deps in import_graph().items() if "lightning" in deps)
    assert users
    assert all(m.startswith(aware) for m in users), users


def long_modules() -> dict[str, int]:
    """Modules over :data:`LONG` lines, with their line counts."""
    counts = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    return {n: c for n, c in counts.items() if c > LONG}


def test_long_modules_say_why_they_are_one_file() -> None:
    modules = _modules()
    missing = []
    for name, count in long_modules().items():
        doc = ast.get_docstring(ast.parse(modules[name].read_text())) or ""
        if LONG_REASON not in doc:
            missing.append(f"{name} ({count} lines)")
    assert not missing, (
        f"over {LONG} lines without '{LONG_REASON} ...' in the docstring: {missing}")
