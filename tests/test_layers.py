"""The layout rules of CONTRIBUTING.md, checked on the source: layers, no import cycles, sizes.

Layers, lowest first: leaves (``errors``, ``bands``, ``conventions``, ``banded``, ``compiled``: they import
nothing of ours) < ``io`` < stages (``search``, ``offsets``, ``corrections``, ``timeseries``, ``pairs``,
``decompose``, ``sar``, ``quake``, ``synthetic``, ``masks``, ``parallel``, ``config``) < ``workflows`` and
``demo`` < ``service`` < ``cli``. A module imports only from its own layer or lower (wherever the import
statement is), and modules import each other without cycles. Sizes, outside numba kernels: no source file
over 900 lines (the orchestrator ``workflows/job.py`` under 450), no function over 120 lines, none with over
8 positional parameters.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = {
    "geodeform": 0,  # the package root holds only the version
    "errors": 0,
    "bands": 0,
    "conventions": 0,
    "banded": 0,  # banded Cholesky / solve / inverse kernels shared by timeseries and decompose
    "lazy": 0,  # lazy package namespaces (module __getattr__ of the stage packages)
    "compiled": 0,  # small numba helpers shared by the stages' kernels (one compiled np.median)
    "io": 1,
    **dict.fromkeys(
        (
            "search",
            "offsets",
            "corrections",
            "timeseries",
            "pairs",
            "decompose",
            "sar",
            "quake",
            "synthetic",
            "masks",
            "parallel",
            "config",
            "config_yaml",
            "config_quake",
        ),
        2,
    ),
    "workflows": 3,
    "demo": 3,
    "service": 4,
    "cli": 5,
}
# Rule breakers in packages being restructured on other branches (issue 18); delete an entry once it is gone.
KNOWN: set[tuple[str, str]] = set()  # (importer, imported) going up the layers
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "geodeform").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@functools.cache
def _nodes(path: Path) -> tuple[ast.AST, ...]:
    return tuple(ast.walk(_tree(path)))


def _imports(name: str, path: Path, *, top_only: bool) -> set[str]:
    """Our modules that ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    tree = _tree(path)
    nodes = tree.body if top_only else _nodes(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "geodeform"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.split(".")[0] != "geodeform":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["geodeform"]


def test_every_package_has_a_layer() -> None:
    unknown = {m.split(".")[1] for m in MODULES if m != "geodeform"} - set(LAYERS)
    assert not unknown, f"give these a layer in tests/test_layers.py (and CONTRIBUTING.md): {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for target in sorted(_imports(name, MODULES[name], top_only=False))
        if _layer(target) > _layer(name) and (name, target) not in KNOWN
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {name: _imports(name, path, top_only=False) for name, path in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = [c for c in cycles if tuple(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


MAX_FILE_LINES = 900
MAX_FUNCTION_LINES = 120
MAX_POSITIONAL = 8


def _is_numba_kernel(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        k in ast.unparse(dec) for dec in fn.decorator_list for k in ("njit", "jit(", "vectorize", "stencil")
    )


@functools.cache
def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for name, path in MODULES.items():
        for node in _nodes(path):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_numba_kernel(node):
                found.append((f"{name}.{node.name} (line {node.lineno})", node))
    return found


def test_no_source_file_is_too_long() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    long = {name: n for name, n in sizes.items() if n > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"
    assert sizes["geodeform.workflows.job"] < 450, "workflows/job.py wires stages only: move the stage out"


def test_no_function_is_too_long() -> None:
    long = [
        f"{name}: {fn.end_lineno - fn.lineno + 1} lines"
        for name, fn in _functions()
        if fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


def test_no_function_takes_too_many_positional_parameters() -> None:
    many = []
    for name, fn in _functions():
        positional = [a for a in (*fn.args.posonlyargs, *fn.args.args) if a.arg not in ("self", "cls")]
        if len(positional) > MAX_POSITIONAL:
            many.append(f"{name}: {len(positional)} positional parameters")
    assert not many, "\n".join(many)


def _lazy_packages() -> list[str]:
    return sorted(
        name
        for name, path in MODULES.items()
        if path.name == "__init__.py" and "lazy_exports(" in path.read_text(encoding="utf-8")
    )


@pytest.mark.parametrize("package", _lazy_packages())
def test_lazy_package_names_match_their_type_checking_imports(package: str) -> None:
    """A package of ``geodeform.lazy``: the names it loads on first use (``lazy_exports``), the imports it
    shows type checkers and documentation tools (``if TYPE_CHECKING:``) and its ``__all__`` are the same,
    and each name loads from the module said."""
    import importlib

    tree = _tree(MODULES[package])
    typed: dict[str, set[str]] = {}
    lazy: dict[str, set[str]] = {}
    listed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, ast.unparse(imp)
                sub = imp.module.removeprefix(f"{package}.")
                typed.setdefault(sub, set()).update(a.name for a in imp.names)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if ast.unparse(node.value.func) == "lazy_exports":
                lazy = {k: set(v) for k, v in ast.literal_eval(node.value.args[1]).items()}
        elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            listed = set(ast.literal_eval(node.value))
    assert typed == lazy, f"{package}: TYPE_CHECKING imports and lazy_exports differ"
    assert set().union(*lazy.values()) == listed, f"{package}: __all__ and lazy_exports differ"
    module = importlib.import_module(package)
    for sub, names in lazy.items():
        source = importlib.import_module(f"{package}.{sub}")
        assert all(getattr(module, n) is getattr(source, n) for n in names)
