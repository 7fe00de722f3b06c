"""The layout the architecture page describes: imports point down the layers, no module imports
one that imports it back, and private torch or OS interfaces appear only behind the backend seam."""

import ast
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ebm", "samplers", "estimators")
LAYER = {"ebm": 0, "samplers": 1, "estimators": 2, "boltzkit_cli": 3}


def _modules() -> dict[str, Path]:
    found = {"boltzkit_cli": ROOT / "boltzkit_cli.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, known) -> set[str]:
    """Every module of ours that ``path`` imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for target in _imports(path, modules):
            if target != name and not name.startswith(target + "."):
                g.add_edge(name, target)  # a package's own submodules may import the package
    return g


def test_no_module_imports_one_that_imports_it_back():
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == [], cycles[:5]


def test_imports_point_down_the_layers():
    upward = [(a, b) for a, b in _graph().edges if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]
    assert upward == [], upward


def test_private_torch_and_os_interfaces_only_behind_the_backend_seam():
    """``torch._...``, ``torch.ops``, ctypes and /proc appear only in ebm/backend."""
    pattern = re.compile(r"torch\._[a-zA-Z]|torch\.ops\.|\bctypes\b|/proc/")
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for name, path in _modules().items()
        if not name.startswith("ebm.backend")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == [], found
