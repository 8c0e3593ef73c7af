"""The package layout: no import cycle among tael's modules, nothing below Store
imports it, and no module reaches into another object's private attributes.

Imports are read with ``ast`` from the source, counting every import in a module
wherever it is written: at the top, inside a function (a lazy import), and under
``if TYPE_CHECKING:`` (a cycle that only the type checker follows is still a
cycle in the design).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tael"

ABOVE_STORE = {
    "tael",
    "tael.__main__",
    "tael._cli",
    "tael._server",
    "tael._maintenance",
    "tael._demo",
    "tael._admin",
    "tael._serveradmin",
}
"""The modules allowed to import ``tael._store``: the package's front door and what runs a store."""


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(path: Path, root: Path = ROOT) -> str:
    """The package a relative import in ``path`` is relative to."""
    name = module_name(path, root)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """Every module of ``modules`` that ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path, root).split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # each name is a submodule (``from . import _codec``) or something of the module
            # imported from (``from ._x import y``, ``from . import repair``: the package)
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target in modules:
                found.add(target)
    found.discard(module_name(path, root))
    return found


def import_graph(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, set[str]]:
    files = sorted(package.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, modules, root) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ---------------------------------------------------------------- the checker checks


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        p = tmp_path / "tael" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return import_graph(tmp_path / "tael", tmp_path)


def test_the_checker_finds_a_cycle_through_a_type_checking_import(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "_a.py": "from ._b import B\n",
            "_b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._c import C\n",
            "_c.py": "def f():\n    from . import _a\n",
            "_d.py": "from ._a import x\n",
        },
    )
    assert graph["tael._d"] == {"tael._a"}
    assert cycles(graph) == [["tael._a", "tael._b", "tael._c"]]


def test_the_checker_resolves_relative_imports_in_subpackages(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "_x.py": "",
            "_sub/__init__.py": "",
            "_sub/a.py": "from .. import _x\nfrom .b import y\nfrom . import thing\n",
            "_sub/b.py": "import tael._x\n",
        },
    )
    assert graph["tael._sub.a"] == {"tael._x", "tael._sub.b", "tael._sub"}
    assert graph["tael._sub.b"] == {"tael._x"}
    assert cycles(graph) == []


# ---------------------------------------------------------------- tael's layout


def test_no_import_cycle_among_tael_modules() -> None:
    assert cycles(import_graph()) == []


def test_nothing_below_store_imports_it() -> None:
    """Nor the package itself, which hands out ``Store`` (``from . import Store`` would
    reach it through the package's lazy names without naming tael._store)."""
    graph = import_graph()
    importers = sorted(m for m, deps in graph.items() if "tael._store" in deps and m not in ABOVE_STORE)
    assert importers == [], f"modules below Store import tael._store: {importers}"
    via_package = sorted(m for m, deps in graph.items() if "tael" in deps and m not in ABOVE_STORE)
    assert via_package == [], f"modules below Store import the tael package: {via_package}"


def test_the_query_package_init_imports_nothing() -> None:
    tree = ast.parse((PACKAGE / "_query" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_no_private_member_access_in_tael() -> None:
    """ruff's SLF001: no module reads or calls another object's ``_private`` members."""
    ruff = [sys.executable, "-m", "ruff", "check", "tael", "--select", "SLF001", "--output-format", "concise"]
    proc = subprocess.run(ruff, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_store_only_orchestrates_in_under_500_lines() -> None:
    lines = (PACKAGE / "_store.py").read_text().count("\n")
    assert lines < 500, f"tael/_store.py has {lines} lines: its logic belongs to the part it routes to"


FILTER_BUILDERS = {"field", "scalar", "Expression"}
"""``pyarrow.compute.field(...)``, ``pc.scalar(...)``, ``pyarrow.dataset.field(...)``: a filter expression."""
ARROW_FILTER_MODULES = {"pyarrow.compute", "pyarrow.dataset"}
FILTER_MODULES = ("_query/", "_hot.py", "_cold.py", "_coldfs.py")
"""Where filters are translated: the query package and the tiers."""


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def filter_expressions(path: Path) -> list[int]:
    """Lines of ``path`` that build an Arrow filter expression (``pc.field(...)`` and the
    like), however pyarrow's compute or dataset module or its builders were imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set(ARROW_FILTER_MODULES)  # names (or dotted paths) that mean one of those modules
    builders: set[str] = set()  # bare names bound to a builder
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ARROW_FILTER_MODULES:
                    modules.add(alias.asname or alias.name)
                elif alias.name == "pyarrow":
                    modules.update(f"{alias.asname or 'pyarrow'}.{m.split('.')[1]}" for m in ARROW_FILTER_MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module == "pyarrow":
            for alias in node.names:
                if f"pyarrow.{alias.name}" in ARROW_FILTER_MODULES:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module in ARROW_FILTER_MODULES:
            builders.update(alias.asname or alias.name for alias in node.names if alias.name in FILTER_BUILDERS)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id in builders) or (
            isinstance(func, ast.Attribute) and func.attr in FILTER_BUILDERS and _dotted(func.value) in modules
        ):
            found.append(node.lineno)
    return found


def test_filter_expressions_are_built_only_in_the_query_package_and_the_tiers() -> None:
    outside = {
        str(p.relative_to(PACKAGE)): lines
        for p in sorted(PACKAGE.rglob("*.py"))
        if not str(p.relative_to(PACKAGE)).startswith(FILTER_MODULES) and (lines := filter_expressions(p))
    }
    assert outside == {}


@pytest.mark.parametrize(
    "source",
    [
        "import pyarrow.compute as pc\ne = pc.field('service') == 'a'\n",
        "import pyarrow.compute as arrow_fns\ne = arrow_fns.field('service') == 'a'\n",
        "from pyarrow.compute import field\ne = field('service') == 'a'\n",
        "from pyarrow.compute import field as col\ne = col('service') == 'a'\n",
        "import pyarrow as pa\ne = pa.compute.field('service') == 'a'\n",
        "import pyarrow\ne = pyarrow.dataset.field('date') == 'a'\n",
        "from pyarrow import dataset as d\ne = d.field('date') == 'a'\n",
    ],
)
def test_the_filter_check_finds_an_expression_however_it_was_imported(tmp_path: Path, source: str) -> None:
    src = tmp_path / "m.py"
    src.write_text(source)
    assert filter_expressions(src) == [2]


def test_the_filter_check_ignores_other_field_calls(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import dataclasses\nf = dataclasses.field(default=1)\nimport pyarrow as pa\ns = pa.field('x', pa.int64())\n"
    )
    assert filter_expressions(src) == []


def test_no_module_imports_another_modules_private_names() -> None:
    """What SLF001 does not see: ``from ._hot import _KEY`` shares a private name as much as
    ``hot._KEY`` does. Private modules themselves (``from . import _codec``) are fine."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    shared = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package_of(path).split(".")
                origin = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and f"{origin}.{alias.name}" not in modules:
                        shared.append(f"{module_name(path)}:{node.lineno} {origin}.{alias.name}")
    assert shared == []
