"""The architecture's rules, read from the source: no import cycle, the library never imports the
lab (recipe, study, CLI, plots) nor matplotlib, no file past ~400 lines, no line past 120."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reglab"
LIBRARY = ("reglab.optim", "reglab.regularize", "reglab.augment", "reglab.models", "reglab.data", "reglab.train",
           "reglab.errors", "reglab.registry", "reglab._checks", "reglab._files")  # fmt: skip
LAB = "reglab.lab"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    """Whether ``node`` sits under ``if TYPE_CHECKING:`` (never executed: not a runtime import)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str) -> list[tuple[str, bool]]:
    """``(imported module, runtime)`` for every import statement of module ``name``, function-level
    ones included; ``runtime`` is False under ``if TYPE_CHECKING:``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from a.b import c``: the module a.b.c if there is one, else a.b
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        runtime = not _type_checking_only(node, parents)
        out += [(t, runtime) for t in targets]
    return out


def graph(runtime_only: bool) -> dict[str, set[str]]:
    return {
        m: {t for t, runtime in imports(m) if t in MODULES and t != m and (runtime or not runtime_only)}
        for m in MODULES
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph, as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_graph_reader_sees_function_level_imports_and_finds_cycles():
    names = {t for t, _ in imports("reglab.lab.study.stats")} | {t for t, _ in imports("reglab.lab.cli")}
    assert "reglab.lab.recipe" in names and "reglab.lab.study.arms" in names  # cli imports arms in a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_anywhere():
    """Function-level imports count; imports under ``if TYPE_CHECKING:`` never run and do not."""
    assert find_cycle(graph(runtime_only=True)) is None, f"import cycle: {' -> '.join(find_cycle(graph(True)))}"


def test_the_library_never_imports_the_lab_nor_matplotlib():
    """Not even for type hints: a library module takes plain arguments."""
    bad = []
    for m in MODULES:
        if not m.startswith(LIBRARY):
            continue
        for target, _ in imports(m):
            if target == LAB or target.startswith(LAB + ".") or target.split(".")[0] == "matplotlib":
                bad.append(f"{m} imports {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_importing_the_training_loop_loads_neither_the_lab_nor_matplotlib():
    code = (
        "import sys, reglab.train; print(sorted(m for m in sys.modules if m.startswith(('reglab.lab', 'matplotlib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("folder", ["reglab", "tests", "benchmarks"])
def test_no_file_past_400_lines_and_no_line_past_120(folder):
    long_files, long_lines = [], []
    for path in sorted((ROOT / folder).rglob("*.py")):
        lines = path.read_text().splitlines()
        if folder == "reglab" and len(lines) > 420:  # "~400": a docstring's worth of slack
            long_files.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        long_lines += [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(lines, 1) if len(line) > 120]
    assert not long_files and not long_lines, "\n".join(long_files + long_lines)


def test_every_file_reglab_writes_goes_through_atomic_write():
    """No other write to a path in the package: ``reglab._files.atomic_write`` is the one helper."""
    writes = ("write_text(", "write_bytes(", "os.replace(", "mkstemp(", 'open("w', "open('w", ', "w")', ", 'w')")
    bad = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "_files.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if any(w in line for w in writes)
    ]
    assert not bad, "\n".join(bad)


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    from reglab._files import atomic_write

    target = tmp_path / "new" / "f.txt"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"

    def fails(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_text() == "second" and [p.name for p in target.parent.iterdir()] == ["f.txt"]
