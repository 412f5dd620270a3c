"""The structure the code promises (docs/architecture.md): no import cycle among the modules of
``mdm`` and ``simulator``, ``mdm`` never imports ``simulator``, and ``mdm.protocol`` stays pure codecs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mdm", "simulator")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _runtime_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in names:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _runtime_imports(name, path, known) for name, path in known.items()}


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
            # a package and the modules its __init__ re-exports are one unit, not a cycle
            if len(component) > 1 and not all(c.startswith(min(component) + ".") or c == min(component) for c in component):
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_vendor_never_imports_the_simulation_and_protocol_stays_pure() -> None:
    graph = _graph()
    for name, targets in graph.items():
        if name.startswith("mdm"):
            assert not [t for t in targets if t.startswith("simulator")], name
    impure = ("flask", "werkzeug", "sqlite3", "threading")
    for path in (ROOT / "mdm" / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & set(impure), (path.name, imported & set(impure))


def test_the_check_finds_a_cycle_when_there_is_one(tmp_path, monkeypatch) -> None:
    """The cycle test above is not vacuous: two modules that import each other are reported."""
    (tmp_path / "mdm").mkdir()
    (tmp_path / "simulator").mkdir()
    (tmp_path / "mdm" / "__init__.py").write_text("")
    (tmp_path / "simulator" / "__init__.py").write_text("")
    (tmp_path / "mdm" / "a.py").write_text("from . import b\n")
    (tmp_path / "mdm" / "b.py").write_text("from .a import thing\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    try:
        test_no_import_cycles()
    except AssertionError as failure:
        assert "mdm.a" in str(failure) and "mdm.b" in str(failure)
    else:
        raise AssertionError("a cycle between mdm.a and mdm.b went unnoticed")
