"""The import graph: no cycles, and lower layers never import higher ones
(docs/architecture.md). Read from the source (every import, also those inside
functions; those under ``if TYPE_CHECKING:`` are annotations only)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stemunmix"

# Layer of each part; a module may import its own layer or lower ones.
LAYERS = {"core": 1, "learn": 1, "nn": 1, "columns": 1, "signals": 2}
EDGES = 3  # interop, report, cli, synthetic

# Upward imports that stay, each with its reason.
ALLOWED = {
    # Columns keeps its public conversions (DESIGN.md); the code is in interop.
    ("stemunmix.columns", "stemunmix.interop.atomap"),
    # Columns keeps its public measurement methods (DESIGN.md); the signals
    # they return are made in signals/_measurements.
    ("stemunmix.columns", "stemunmix.signals._measurements"),
}


def _modules() -> dict:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set:
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in modules] or [base]
        else:
            continue
        for t in targets:
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules and t != name and t.startswith("stemunmix"):
                found.add(t)
    return found


def _layer(name: str) -> int:
    parts = name.split(".")
    # The package itself holds __version__ and Columns; the rest it imports
    # lazily by name (PEP 562).
    return LAYERS.get(parts[1], EDGES) if len(parts) > 1 else 1


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_cycle(graph):
    index, low, stack, cycles = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while not part or part[-1] != v:
                part.append(stack.pop())
            if len(part) > 1:
                cycles.append(sorted(part))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_lower_layers_never_import_higher_ones(graph):
    upward = sorted(
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if _layer(t) > _layer(m) and (m, t) not in ALLOWED
    )
    assert not upward, f"upward imports: {upward}"


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above are not vacuous: they find what they look for."""
    modules = {"stemunmix.core.a": tmp_path / "a.py", "stemunmix.core.b": tmp_path / "b.py",
               "stemunmix.report": tmp_path / "r.py"}  # fmt: skip
    modules["stemunmix.core.a"].write_text("from stemunmix.core import b\n")
    modules["stemunmix.core.b"].write_text(
        "def f():\n    from stemunmix.core.a import x\n    import stemunmix.report\n"
    )
    modules["stemunmix.report"].write_text("")
    found = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert found["stemunmix.core.a"] == {"stemunmix.core.b"}
    assert found["stemunmix.core.b"] == {"stemunmix.core.a", "stemunmix.report"}
    assert _layer("stemunmix.report") > _layer("stemunmix.core.b")


def _code_lines(path: Path):
    """(class.method, lines of code: no docstring, comment or blank line)."""
    source = path.read_text()
    lines = source.splitlines()
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            first = fn.body[0]
            doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            start = first.end_lineno + 1 if doc else first.lineno
            code = [
                line
                for line in lines[start - 1 : fn.end_lineno]
                if line.strip() and not line.strip().startswith("#")
            ]
            yield f"{path.name}:{cls.name}.{fn.name}", len(code)


def test_signal_methods_stay_thin():
    """Signal methods validate, delegate and annotate (DESIGN.md): at most 30
    lines of code each; the work lives in helpers and the core."""
    long = [(name, n) for path in sorted((PACKAGE / "signals").glob("*.py"))
            for name, n in _code_lines(path) if n > 30]  # fmt: skip
    assert not long, f"signal methods over 30 lines of code: {long}"


def test_the_formatter_owns_the_layout():
    skips = sum(p.read_text().count("# fmt: skip") for p in PACKAGE.rglob("*.py"))
    assert skips <= 20, f"{skips} '# fmt: skip' in the package (at most 20)"


def test_the_front_doors_use_public_names_only():
    """The report and the command line are what a user could write: no
    private attribute of stemunmix's objects (HyperSpy's ``_lazy`` aside)."""
    private = []
    for path in [*sorted((PACKAGE / "report").glob("*.py")), PACKAGE / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr != "_lazy"
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                private.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not private, private
