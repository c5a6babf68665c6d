"""The layer order of docs/architecture.md, enforced: every import in src/groupwise points down.

Each module's imports are read with `ast` (those inside functions too). An import of another top-level package
is allowed only into a lower layer, and the packages of one layer (models, data, sandbox) do not import each
other. No module imports a `_private` name or module from another file, and no files import each other in a
circle, except config's load/schema pair (schema's two convenience methods load lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

import groupwise

PACKAGE = Path(groupwise.__file__).parent
ARCHITECTURE = PACKAGE.parents[1] / "docs" / "architecture.md"
ROOT = {"groupwise", "entry"}  # the package root re-exports the API: it stands above every layer
ALLOWED_CIRCLES = [{"groupwise.config.load", "groupwise.config.schema"}]

Import = tuple[str, str | None, int]  # (module imported, name taken from it or None, line)


def layers(text: str | None = None) -> list[list[str]]:
    """The order written at the top of docs/architecture.md: the line `cli > api > ... > errors`."""
    text = ARCHITECTURE.read_text() if text is None else text
    line = next(line for line in text.splitlines() if line.startswith("`cli > "))
    return [[name.strip() for name in layer.split(",")] for layer in line.strip("`").split(" > ")]


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package's __init__ under the package's name)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of the package's own modules in one file, relative ones resolved."""
    found: list[Import] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = name.split(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.split(".")[0] == root]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] != root:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in known else (base, alias.name, node.lineno))
    return found


def top(module: str) -> str:
    """The top-level package (or root module) a module belongs to: groupwise.train.step -> train."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(order: list[list[str]], package: Path = PACKAGE) -> list[str]:
    rank = {name: depth for depth, layer in enumerate(order) for name in layer}
    known = modules(package)
    wrong = []
    for name, path in known.items():
        source = top(name)
        for target, _, line in imports(name, path, known):
            destination = top(target)
            if source == destination or source in ROOT:
                continue
            if source not in rank or destination not in rank:
                wrong.append(f"{name}:{line} imports {target}: {source} or {destination} is on no layer")
            elif rank[destination] <= rank[source]:
                wrong.append(f"{name}:{line} imports {target}: {destination} is not below {source}")
    return wrong


def private_imports(package: Path = PACKAGE) -> list[str]:
    known = modules(package)
    wrong = []
    for name, path in known.items():
        for target, taken, line in imports(name, path, known):
            parts = target.split(".") + ([taken] if taken else [])
            if target != name and any(part.startswith("_") and not part.startswith("__") for part in parts):
                wrong.append(f"{name}:{line} imports {target}{'.' + taken if taken else ''}")
    return wrong


def file_circles(package: Path = PACKAGE) -> list[set[str]]:
    """Groups of modules that import each other in a circle (Tarjan's strongly connected components)."""
    known = modules(package)
    graph = {name: sorted({t for t, _, _ in imports(name, path, known) if t in known and t != name})
             for name, path in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while (member := stack.pop()) != node:
                component.add(member)
            if component:
                circles.append(component | {node})

    for node in graph:
        if node not in index:
            visit(node)
    return circles


def test_the_layers_name_every_package():
    order = [name for layer in layers() for name in layer]
    packages = {top(name) for name in modules()} - ROOT
    assert sorted(order) == sorted(packages)
    assert order[0] == "cli" and order[-1] == "errors"


def test_every_import_points_down():
    assert upward_imports(layers()) == []


def test_no_file_imports_a_private_name_of_another():
    assert private_imports() == []


def test_no_import_circle_between_files_but_config_load_and_schema():
    assert [c for c in file_circles() if c not in ALLOWED_CIRCLES] == []


def test_the_sandbox_knows_nothing_of_rewards_rollout_or_training():
    known = modules()
    used = {top(t) for name, path in known.items() if top(name) == "sandbox" for t, _, _ in imports(name, path, known)}
    assert used <= {"sandbox", "errors"}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "groupwise"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_upward_import_a_private_import_and_a_circle_are_each_caught(tmp_path):
    """The checks on a planted package: each mistake is reported, at its line (engine -> step -> engine and
    step <-> loop make one circle of three files)."""
    package = _package(tmp_path, {
        "__init__.py": "", "errors.py": "",
        "rollout/__init__.py": "", "rollout/engine.py": "def f():\n    from groupwise.train.step import grpo_step\n",
        "train/__init__.py": "", "train/step.py": "from groupwise.rollout import engine\nfrom .loop import _helper\n",
        "train/loop.py": "from groupwise.train import step\n_helper = 1\n",
    })
    order = [["train"], ["rollout"], ["errors"]]
    assert upward_imports(order, package) == [
        "groupwise.rollout.engine:2 imports groupwise.train.step: train is not below rollout"]
    assert private_imports(package) == ["groupwise.train.step:2 imports groupwise.train.loop._helper"]
    assert file_circles(package) == [{"groupwise.rollout.engine", "groupwise.train.step", "groupwise.train.loop"}]
    assert upward_imports([["rollout"], ["train"], ["errors"]], package) == [
        "groupwise.train.step:1 imports groupwise.rollout.engine: rollout is not below train"]
