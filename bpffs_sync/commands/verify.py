"""`bpffs-sync verify`: does bpffs mirror cgroupfs? Kernel state only, no daemon needed.

The same diff the daemon applies, reported instead of applied, plus the collectors' health
(a mirror whose collector is gone shows files full of zeros). `--v1` verifies the selected v1
trees the same way, one Report per tree, plus the top of the v1 mirror (hierarchy directories
and controller symlinks) in a ForestReport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.mirror.diff import OpKind, Plan, diff
from bpffs_sync.mirror.forest import ALL, Selection, TopDrift, Tree, top_actual, top_desired, top_diff, v1_root
from bpffs_sync.mirror.tree import ConflictReason, Kind
from bpffs_sync.paths import Layout, display
from bpffs_sync.programs import StatProgram, lookup
from bpffs_sync.stats import Generations, collector_problem

_CONFLICT_TEXT = {
    ConflictReason.SHADOWED: "cgroup named like a stat file",
    ConflictReason.UNREADABLE: "cgroup directory unreadable",
    ConflictReason.TOO_DEEP: "cgroup too deep",
}


@dataclass(slots=True)
class Report:
    layout: Layout
    plan: Plan
    cgroups: int
    files: int
    collector_problems: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.plan and not self.collector_problems

    def to_json(self) -> dict[str, Any]:
        drift: dict[str, list[dict[str, Any]]] = {}
        for op in self.plan.drift():
            item: dict[str, Any] = {"path": display(op.path), "kind": "dir" if op.kind is OpKind.MKDIR else "file"}
            if op.kind is OpKind.PIN:
                item["expected_cgroup_id"] = op.cgroup_id
            if op.actual_cgroup_id:
                item["actual_cgroup_id"] = op.actual_cgroup_id
            if op.kind is OpKind.REMOVE:
                item["kind"] = "entry"
            drift.setdefault(str(op.reason), []).append(item)
        return {
            "in_sync": self.in_sync,
            "bpffs": self.layout.bpffs,
            "cgroup_root": self.layout.cgroup_root,
            "mirror_root": self.layout.mirror_root,
            "cgroups": self.cgroups,
            "files": self.files,
            "drift": drift,
            "collector_problems": self.collector_problems,
            "conflicts": [{"path": display(c.path), "cgroup_id": c.cgroup_id, "reason": str(c.reason),
                           "detail": c.detail} for c in self.plan.conflicts],
        }

    def to_text(self) -> str:
        lines = []
        for op in self.plan.drift():
            extra = ""
            if op.kind is OpKind.PIN and op.actual_cgroup_id:
                extra = f" (serves cgroup {op.actual_cgroup_id}, expected {op.cgroup_id})"
            elif op.kind is OpKind.PIN:
                extra = f" (cgroup {op.cgroup_id})"
            lines.append(f"{op.reason!s:<14} {display(op.path)}{extra}")
        lines.extend(f"{'collector':<14} {p}" for p in self.collector_problems)
        lines.extend(f"{'conflict':<14} {display(c.path)} ({_CONFLICT_TEXT[c.reason]}"
                     f"{': ' + c.detail if c.detail else ''}; not mirrored)" for c in self.plan.conflicts)
        drifted = len(self.plan.drift()) + len(self.collector_problems)
        verdict = "in sync" if self.in_sync else f"DRIFT: {drifted} entries"
        lines.append(f"{verdict}: {self.cgroups} cgroups, {self.files} stat files under {self.layout.mirror_root}")
        return "\n".join(lines)


@dataclass(slots=True)
class ForestReport:
    """`verify --v1`: the top of the v1 mirror and one Report per selected tree."""

    bpffs: str
    top: list[TopDrift]
    trees: list[Report]

    @property
    def in_sync(self) -> bool:
        return not self.top and all(r.in_sync for r in self.trees)

    def to_json(self) -> dict[str, Any]:
        top: dict[str, list[dict[str, str]]] = {}
        for d in self.top:
            item = {"path": d.name, "kind": "symlink" if d.target else "dir"}
            if d.target:
                item["target"] = d.target
            top.setdefault(d.reason, []).append(item)
        trees = []
        for r in self.trees:
            doc = r.to_json()
            doc.update(tree=r.layout.mirror, hierarchy_id=r.layout.hierarchy_id)
            trees.append(doc)
        return {"in_sync": self.in_sync, "bpffs": self.bpffs, "v1_root": v1_root(self.bpffs),
                "top_drift": top, "trees": trees}

    def to_text(self) -> str:
        lines = []
        for d in self.top:
            what = f" -> {d.target} (symlink)" if d.target else ""
            lines.append(f"{d.reason:<14} {d.name}{what}")
        verdict = "in sync" if not self.top else f"DRIFT: {len(self.top)} entries"
        lines.append(f"{verdict}: {v1_root(self.bpffs)} (hierarchy directories and controller symlinks)")
        for r in self.trees:
            lines.append("")
            lines.append(f"== {r.layout.mirror} <- {r.layout.cgroup_root}")
            lines.append(r.to_text())
        return "\n".join(lines)


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
