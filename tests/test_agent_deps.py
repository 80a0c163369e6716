"""The node agent runs without the lab's packages: every agent command imports none of them, and the
lab's `report` says in one line which extra to install (issue 21: the agent's wheel carries no lab)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bpffs_sync.measure.report.command import LAB_MODULES

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
# Run the CLI with the lab's modules made unimportable, as in a venv that has only the agent's lock.
_BLOCK = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {LAB_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda n, p=None: None if n.split(".")[0] in {LAB_MODULES!r} else _find(n, p)
from bpffs_sync.cli import main
sys.argv = ["bpffs-sync", *sys.argv[1:]]
sys.exit(main())
"""


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _BLOCK, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["verify", "--help"], ["status", "--help"],
                                  ["clean", "--help"], ["export", "--help"], ["--version"]])
def test_agent_commands_need_no_lab(argv: list[str]) -> None:
    res = _cli(*argv)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_report_without_the_lab_is_one_line() -> None:
    res = _cli("report", "--quick", "--out", "/nonexistent/never-made")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "bpffs-sync[lab]" in lines[0], res.stderr


def test_no_agent_module_imports_the_lab() -> None:
    """Statically: nothing outside bpffs_sync/measure imports a lab package at all."""
    offenders = []
    for path in (REPO / "bpffs_sync").rglob("*.py"):
        if "measure" in path.relative_to(REPO / "bpffs_sync").parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in LAB_MODULES:
                offenders.append(f"{path.relative_to(REPO)}:{n}")
    assert offenders == []
