"""The user-space mirror (Approach 1 in user space, any kernel with cgroup iterators): a daemon
keeps one pinned SELF_ONLY cgroup iterator per cgroup and stat (mirror/daemon.py); verify diffs
cgroupfs against the pins, plus the collectors' health (a mirror whose collector is gone shows
files full of zeros). `--v1` verifies each selected v1 tree the same way, plus the top of the v1
mirror (hierarchy directories and controller symlinks) in a ForestReport.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bpffs_sync.backends.base import Backend, Request, RunResult, Verdict
from bpffs_sync.errors import UsageError
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.mirror.diff import diff
from bpffs_sync.mirror.forest import ALL, Selection, Tree, resolve_now, top_actual, top_desired, top_diff
from bpffs_sync.mirror.report import ForestReport, Report
from bpffs_sync.mirror.tree import Kind
from bpffs_sync.paths import Layout
from bpffs_sync.programs import StatProgram, lookup, object_path
from bpffs_sync.stats import Generations, collector_problem


def _collector_problems(layout: Layout, specs: list[StatProgram], gens: Generations) -> list[str]:
    problems = []
    for spec in specs:
        map_id = gens.map_ids.get(spec.name)
        if map_id is None:
            problems.append(f"{spec.name}: no stats map pinned at {layout.private_path(spec.name, spec.stats_map)}")
            continue
        problem = collector_problem(layout, spec, map_id)
        if problem is not None:
            problems.append(f"{spec.name}: {problem}")
    return problems


def verify_forest(selection: Selection, trees: list[Tree], bpffs_root: str) -> ForestReport:
    """Every selected v1 tree, and the entries above them. With `all`, an entry under
    <bpffs>/cgroup-v1 that no mounted hierarchy explains is stale drift."""
    top = top_diff(top_desired(trees), top_actual(bpffs_root), prune=ALL in selection.selectors)
    reports = [verify(t.layout, [lookup(n) for n in t.stats]) for t in trees]
    return ForestReport(bpffs_root, top, reports)


def verify(layout: Layout, specs: list[StatProgram]) -> Report:
    names = tuple(s.name for s in specs)
    gens = Generations.from_pins(layout, specs)
    view = cgroupfs.walk(layout, names)
    actual = bpffs.walk(layout, bpffs.PinJudge(gens.judge))
    plan = diff(view.tree, actual.tree, view.conflicts, view.opaque | actual.opaque)
    cgroups = sum(1 for d in view.tree.values() if d.kind is Kind.DIR)
    files = sum(1 for a in actual.tree.values() if a.kind is Kind.PIN)
    return Report(layout, plan, cgroups, files, _collector_problems(layout, specs, gens))


class UserSpace(Backend):
    """Approach 1 in user space: the daemon (mirror/daemon.py) and its pins."""

    mode = "user-space"
    refuses: ClassVar[dict[str, str]] = {
        "run --json": "only with --kernel or --approach 2 (a daemon logs; `status --json` shows it)",
    }

    @classmethod
    def require(cls) -> None:
        """Any kernel with cgroup iterators (preflight checks BTF and libbpf)."""

    def run(self, req: Request) -> RunResult:
        from bpffs_sync.backends import kernel_a1
        from bpffs_sync.mirror.daemon import run

        if kernel_a1.mirror_enabled(req.layout.bpffs):
            raise UsageError("run", req.layout.bpffs, 0,
                             "this bpffs holds the kernel's mirror (cgroup_mirror): use --kernel")
        return RunResult(run(req.layout, req.specs, req.run, req.selection), {}, [])

    def verify(self, req: Request) -> Verdict:
        if req.selection is None:
            return verify(req.layout, req.specs)
        trees = resolve_now(req.selection, req.layout)
        for tree in trees:
            for name in tree.stats:
                object_path(lookup(name))
        return verify_forest(req.selection, trees, req.layout.bpffs)

    def clean(self, req: Request) -> int:
        from bpffs_sync.commands.clean import clean

        return clean(req.layout)

    def status(self, req: Request) -> dict[str, Any]:
        return {}
