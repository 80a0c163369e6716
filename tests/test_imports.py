"""Import layering: v1_controllers imports nothing of bpffs_sync (bpffs_sync imports it), each
imports alone in a fresh interpreter, and no module-level import cycle runs through bpffs_sync."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bpffs_sync", "v1_controllers")


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, everywhere: bool) -> set[str]:
    """Modules `path` imports: at module level only (what runs at import), or anywhere (everywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base]) if base else ".".join(up)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_v1_controllers_imports_nothing_of_bpffs_sync() -> None:
    """Not at module level, not inside a function: the dependency runs one way only."""
    bad = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p, everywhere=True) if m.startswith("bpffs_sync"))
        for p in _files("v1_controllers")
    }
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize("module", ["v1_controllers", "bpffs_sync.cli", "bpffs_sync.backends", "bpffs_sync.libbpf"])
def test_each_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    """A fresh interpreter imports it without error; v1_controllers pulls in no bpffs_sync module."""
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bpffs_sync', 'v1_controllers')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    if module == "v1_controllers":
        assert not [m for m in ast.literal_eval(res.stdout) if m.startswith("bpffs_sync")], res.stdout


def test_no_module_level_import_cycle() -> None:
    """The module-level import graph of both packages has no cycle (a cycle makes import order matter)."""
    modules = {_module(p): p for pkg in PACKAGES for p in _files(pkg)}
    graph = {m: sorted(i for i in _imports(p, everywhere=False) if i in modules and i != m) for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for nxt in graph[m]:
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_agent_never_imports_the_lab() -> None:
    """bpffs_sync outside measure/ imports nothing of bpffs_sync.measure: not at module level, and not
    inside a function either; cli.py names the lab's command modules only in its dispatch table
    (docs/architecture.md, "The lab")."""
    bad = {}
    for p in _files("bpffs_sync"):
        rel = str(p.relative_to(REPO))
        if rel.startswith("bpffs_sync/measure/"):
            continue
        lab = sorted(m for m in _imports(p, everywhere=True)
                     if m == "bpffs_sync.measure" or m.startswith("bpffs_sync.measure."))
        if lab:
            bad[rel] = lab
    assert bad == {}


_LAB_COMMANDS = {"bench", "report"}


def test_one_module_per_command() -> None:
    """cli.py dispatches every command it parses to one module's main(): the agent's under
    bpffs_sync/commands/, the lab's (bench, report) under bpffs_sync/measure/."""
    from bpffs_sync import cli

    parsed = set(next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)
    assert set(cli.HANDLERS) == parsed
    for command, module in cli.HANDLERS.items():
        lab = command in _LAB_COMMANDS
        assert module.startswith("bpffs_sync.measure." if lab else "bpffs_sync.commands."), (command, module)
        path = REPO / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), path


@pytest.mark.parametrize("module", ["bpffs_sync.cli", "bpffs_sync.backends", "bpffs_sync.libbpf",
                                    "bpffs_sync.mirror.daemon", "bpffs_sync.export"])
def test_agent_modules_load_no_lab_module(module: str) -> None:
    """Importing an agent module loads no module of the lab (bpffs_sync.measure, its ffi.py included)."""
    code = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.startswith('bpffs_sync.measure')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    assert ast.literal_eval(res.stdout) == [], res.stdout


def test_the_parser_loads_no_lab_module() -> None:
    """Building every command's parser (what any agent command does first) loads nothing of the lab."""
    code = ("import sys\nfrom bpffs_sync import cli\ncli.build_parser()\n"
            "print(sorted(m for m in sys.modules if m.startswith('bpffs_sync.measure')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    assert ast.literal_eval(res.stdout) == [], res.stdout
