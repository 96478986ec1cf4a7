"""The layout's rules, read from the source with ``ast`` (nothing is imported, no database).

The import graph covers ``learning`` and ``webapp``: every ``import`` and ``from ... import`` at module
level, in class bodies, under ``if``/``try`` and inside functions, relative imports resolved. An import
names the deepest module of the tree it reaches (``from learning.dpl import weightfile`` is an edge to
``learning.dpl.weightfile``, ``from learning.dpl import DPL`` one to ``learning.dpl``); the parent
packages that Python initialises on the way are not edges, as in import-linter and grimp. Imports under
``if TYPE_CHECKING:`` never run: they count for the layering rules (they still tie one layer to another)
and not for cycles.

Rules: ``learning`` imports neither Django nor ``webapp``; the webapp apps import only apps below them
(``LAYERS``); no cycle between modules; every import inside a function says why on its line or the line
above; bench/ never edits ``sys.path`` and no test loads a bench script by file path.

``python tests/test_layout.py [--root DIR] [--form mermaid|dot|list]`` prints the package-level graph and
the cycles, for drawing the structure before and after a change.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("learning", "webapp")

# The webapp apps, lowest first (the order of INSTALLED_APPS): an app may import only apps of a lower
# layer, never one of its own layer or above. recruit (paid platforms) and simcrowd (the simulated crowd)
# both sit on lab and know nothing of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stimuli",),
    ("experiments",),
    ("crowd",),
    ("lab",),
    ("recruit", "simcrowd"),
)
LAYER_OF = {app: i for i, layer in enumerate(LAYERS) for app in layer}


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, dotted
    target: str  # the module imported: the deepest one of the tree it reaches, else the name as written
    path: Path
    line: int
    end_line: int
    in_function: bool
    type_checking: bool


# --- reading the tree ---------------------------------------------------------------------------------------


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of ``PACKAGES`` under ``root``."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False, type_checking: bool = False
          ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import below ``node``, with whether it is inside a function and under ``TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), in_function, type_checking)
        else:
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _walk(child, inner, type_checking)


def _deepest(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module of the tree; ``name`` itself when none is."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return name


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of one module, resolved (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node, in_function, type_checking in _walk(tree):
        if isinstance(node, ast.Import):
            targets = [_deepest(a.name, modules) for a in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [_deepest(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source, modules)
                       for a in node.names]
        for target in dict.fromkeys(targets):
            out.append(Import(module, target, path, node.lineno, node.end_lineno or node.lineno, in_function,
                              type_checking))
    return out


def import_graph(root: Path = ROOT) -> list[Import]:
    """Every import of every module of ``PACKAGES`` under ``root``."""
    modules = module_files(root)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def internal(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


# --- cycles -------------------------------------------------------------------------------------------------


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node, each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        # iterative, so that a deep graph cannot hit the recursion limit
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return sorted(found, key=lambda c: (-len(c), c))


def one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest closed path through the component's first node, for the failure message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for succ in sorted(edges.get(node, ()) & members):
            if succ == start:
                return paths[node] + [start]
            if succ not in paths:
                paths[succ] = paths[node] + [succ]
                queue.append(succ)
    return component


def runtime_edges(imports: list[Import], key: Callable[[str], str] = str) -> dict[str, set[str]]:
    """importer → what it imports, inside the tree, TYPE_CHECKING imports left out; ``key`` maps a module to
    the node it belongs to (itself, or its package)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if internal(imp.target) and not imp.type_checking and key(imp.target) != key(imp.importer):
            edges[key(imp.importer)].add(key(imp.target))
    return edges


def describe_cycles(imports: list[Import], key: Callable[[str], str] = str) -> list[str]:
    """One line per cycle: the nodes of a strongly connected component and one path through it, each step
    with an import that makes it (``line N`` of the importer, ``in a function`` for function-level ones)."""
    edges = runtime_edges(imports, key)
    where: dict[tuple[str, str], Import] = {}
    for imp in sorted(imports, key=lambda i: i.in_function):  # a module-level import first, if any
        if not imp.type_checking and internal(imp.target):
            where.setdefault((key(imp.importer), key(imp.target)), imp)
    lines = []
    for component in strongly_connected(edges):
        path = one_cycle(component, edges)
        steps = []
        for a, b in zip(path, path[1:]):
            imp = where[(a, b)]
            at = f"{imp.importer}:{imp.line}" if key is not str else f"line {imp.line}"
            steps.append(f"{a} → {b} ({at}{', in a function' if imp.in_function else ''})")
        lines.append(f"{len(component)} {{{', '.join(component)}}}: " + "; ".join(steps))
    return lines


# --- the package-level picture ------------------------------------------------------------------------------


def package_of(module: str) -> str:
    """``learning.dpl.model`` → ``learning.dpl``; ``webapp.crowd.platforms.base`` → ``webapp.crowd``."""
    return ".".join(module.split(".")[:2])


def package_graph(imports: list[Import]) -> dict[tuple[str, str], bool]:
    """(package, package it imports) → whether some import of that edge runs at module level (else all of
    them are inside functions or under TYPE_CHECKING)."""
    out: dict[tuple[str, str], bool] = {}
    for imp in imports:
        if not internal(imp.target):
            continue
        a, b = package_of(imp.importer), package_of(imp.target)
        if a != b:
            top = not imp.in_function and not imp.type_checking
            out[(a, b)] = out.get((a, b), False) or top
    return out


def render(graph: dict[tuple[str, str], bool], form: str = "mermaid") -> str:
    """``mermaid``, ``dot`` or ``list`` (one line per package) text; a dashed edge (``list``: a name in
    parentheses) is one made only of function-level or TYPE_CHECKING imports."""
    def node(name: str) -> str:
        return name.replace(".", "_")

    edges = sorted(graph.items())
    if form == "list":
        out: dict[str, list[str]] = defaultdict(list)
        for (a, b), top in edges:
            out[a].append(b if top else f"({b})")
        return "\n".join(f"{a} → {', '.join(bs)}" for a, bs in sorted(out.items()))
    dot = form == "dot"
    if dot:
        body = [f'  "{a}" -> "{b}"{"" if top else " [style=dashed]"};' for (a, b), top in edges]
        return "digraph imports {\n  rankdir=LR;\n" + "\n".join(body) + "\n}"
    names = sorted({n for pair in graph for n in pair})
    body = [f"  {node(n)}[{n}]" for n in names]
    body += [f"  {node(a)} {'-->' if top else '-.->'} {node(b)}" for (a, b), top in edges]
    return "flowchart LR\n" + "\n".join(body)


# --- the rules ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return import_graph(ROOT)


def _at(imp: Import) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line} {imp.importer} → {imp.target}"


def test_the_graph_is_read(imports):
    """A guard against a reader that finds nothing: both packages and their known edges are there."""
    assert {"learning", "webapp"} <= {imp.importer.split(".")[0] for imp in imports}
    assert any(imp.importer == "webapp.experiments.models" and imp.target == "webapp.stimuli.models"
               for imp in imports)
    assert any(imp.in_function for imp in imports)


def test_learning_imports_neither_django_nor_webapp(imports):
    bad = [_at(imp) for imp in imports if imp.importer.split(".")[0] == "learning"
           and imp.target.split(".")[0] in ("django", "webapp", "rest_framework")]
    assert not bad, "learning must stand without the site:\n" + "\n".join(bad)


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "webapp" and len(parts) > 1 and parts[1] in LAYER_OF else None


def test_webapp_apps_import_only_apps_below_them(imports):
    bad = []
    for imp in imports:
        a, b = app_of(imp.importer), app_of(imp.target)
        if a and b and a != b and LAYER_OF[b] >= LAYER_OF[a]:
            bad.append(f"{_at(imp)} ({a} is layer {LAYER_OF[a]}, {b} layer {LAYER_OF[b]})")
    assert not bad, "an app imports one of its own layer or above (LAYERS):\n" + "\n".join(bad)


def test_every_app_has_a_layer():
    apps = {p.parent.name for p in (ROOT / "webapp").glob("*/apps.py")}
    assert apps <= set(LAYER_OF), f"apps without a layer in LAYERS: {sorted(apps - set(LAYER_OF))}"


def test_crowd_never_imports_lab_recruit_or_simcrowd(imports):
    """The participant runtime stands on the study's definition only (stated apart from LAYERS, so that a
    reordering of the layers cannot lift it)."""
    bad = [_at(imp) for imp in imports if app_of(imp.importer) == "crowd"
           and app_of(imp.target) in ("lab", "recruit", "simcrowd")]
    assert not bad, "\n".join(bad)


def test_no_import_cycle(imports):
    cycles = describe_cycles(imports)
    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(cycles)


def test_no_import_cycle_between_packages(imports):
    """Between the packages of learning (``learning.codecs`` ↔ ``learning.training``) and the top modules of
    webapp: a cycle there is a cycle of modules that function-level imports or re-exports only hide."""
    cycles = describe_cycles(imports, package_of)
    assert not cycles, "package cycles:\n" + "\n".join(cycles)


LINT_MARK = re.compile(r"noqa(:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?")


def _reason(comment: str) -> bool:
    """Whether a comment says something beyond linter marks (``# noqa: F401`` alone is no reason)."""
    return bool(re.search(r"[A-Za-z]", LINT_MARK.sub("", comment)))


def _has_reason(lines: list[str], first: int, last: int) -> bool:
    """A comment with a reason on the import's lines (``first``..``last``, 1-based) or the line above."""
    own = [line.partition("#")[2] for line in lines[first - 1:last] if "#" in line]
    above = lines[first - 2].strip() if first > 1 else ""
    return any(_reason(c) for c in own) or (above.startswith("#") and _reason(above[1:]))


def test_every_function_level_import_says_why(imports):
    bad = []
    sources: dict[Path, list[str]] = {}
    for imp in imports:
        if imp.in_function:
            lines = sources.setdefault(imp.path, imp.path.read_text(encoding="utf-8").splitlines())
            if not _has_reason(lines, imp.line, imp.end_line):
                bad.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {lines[imp.line - 1].strip()}")
    bad = sorted(set(bad))
    assert not bad, (f"{len(bad)} imports inside functions without a comment giving the reason (move them "
                     "to the top, or say why they cannot be there):\n" + "\n".join(bad))


SYS_PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\b|\[[^\]]*\]\s*=|\+=|=(?!=))")


def test_bench_never_edits_sys_path():
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
           for p in sorted((ROOT / "bench").rglob("*.py"))
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if SYS_PATH_EDIT.search(line)]
    assert not bad, ("bench scripts import the installed tree as it is, with no sys.path edits:\n"
                     + "\n".join(bad))


BENCH_FILE = re.compile(r"(^|[/\\])bench[/\\][\w/\\]*\.py\b")


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def bench_paths_in(path: Path) -> list[str]:
    """Where a test file names a bench script by path: a string ``bench/X.py`` (outside docstrings), or a
    path built from a ``"bench"`` component (``ROOT / "bench"``, ``os.path.join(..., "bench", ...)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if BENCH_FILE.search(node.value):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if any(isinstance(s, ast.Constant) and s.value == "bench" for s in (node.left, node.right)):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno}: a path through 'bench'")
        elif isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and a.value == "bench"
                                                for a in node.args):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: a call with a 'bench' path component")
    return out


def test_no_test_loads_a_bench_script_by_path():
    bad = [hit for p in sorted((ROOT / "tests").rglob("*.py")) if p != Path(__file__).resolve()
           for hit in bench_paths_in(p)]
    assert not bad, ("tests import what they test (product code lives in learning/ and webapp/):\n"
                     + "\n".join(bad))


HEAVY = ("torch", "torchvision", "compressai")


def test_a_web_worker_starts_without_torch():
    """What a web worker imports (``webapp.wsgi``: Django and every view) loads no torch: the reason why
    ``learning/__init__.py`` imports its entry points on first use, and ``learning.data.bapps`` torch in
    ``to_tensor``. A worker that needs torch for a request (an import, a saliency map) loads it then."""
    code = f"import sys, webapp.wsgi; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]", f"a web worker loads {r.stdout.strip()} at start-up"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the package-level import graph and the cycles.")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to read (default: this one)")
    parser.add_argument("--form", choices=("mermaid", "dot", "list"), default="mermaid")
    args = parser.parse_args(argv)
    found = import_graph(args.root.resolve())
    print(render(package_graph(found), args.form))
    for what, key in (("modules", str), ("packages", package_of)):
        cycles = describe_cycles(found, key)
        print(f"\n{len(cycles)} import cycles between {what} (function-level imports count)")
        for line in cycles:
            print("- " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
