"""`bpffs-sync verify`: does bpffs mirror cgroupfs? Kernel state only, no daemon needed.

The same diff the daemon applies, reported instead of applied, plus the collectors' health
(a mirror whose collector is gone shows files full of zeros).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import bpffs, cgroupfs, libbpf
from .diff import OpKind, Plan, diff
from .errors import LibbpfError
from .paths import Layout, display
from .programs import StatProgram
from .stats import COLLECTOR_PIN, Generations
from .tree import Kind


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
            "conflicts": [{"path": display(c.path), "cgroup_id": c.cgroup_id} for c in self.plan.conflicts],
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
        lines.extend(f"{'conflict':<14} {display(c.path)} (cgroup named like a stat file; not mirrored)"
                     for c in self.plan.conflicts)
        drifted = len(self.plan.drift()) + len(self.collector_problems)
        verdict = "in sync" if self.in_sync else f"DRIFT: {drifted} entries"
        lines.append(f"{verdict}: {self.cgroups} cgroups, {self.files} stat files under {self.layout.mirror_root}")
        return "\n".join(lines)


def _collector_problems(layout: Layout, specs: list[StatProgram], gens: Generations) -> list[str]:
    problems = []
    for spec in specs:
        if gens.map_ids.get(spec.name) is None:
            problems.append(f"{spec.name}: no stats map pinned at {layout.private_path(spec.name, spec.stats_map)}")
            continue
        pin = layout.private_path(spec.name, COLLECTOR_PIN)
        try:
            prog_id = libbpf.pinned_link_info(pin).prog_id
            if gens.map_ids[spec.name] not in libbpf.prog_info_by_id(prog_id).map_ids:
                problems.append(f"{spec.name}: collector at {pin} does not feed the pinned stats map")
        except LibbpfError as err:
            gone = err.op == "bpf_obj_get"
            problems.append(f"{spec.name}: no collector link pinned at {pin}" if gone else f"{spec.name}: {err}")
    return problems


def verify(layout: Layout, specs: list[StatProgram]) -> Report:
    names = tuple(s.name for s in specs)
    gens = Generations.from_pins(layout, specs)
    view = cgroupfs.walk(layout, names)
    actual = bpffs.walk(layout, gens.judge)
    plan = diff(view.tree, actual, view.conflicts)
    cgroups = sum(1 for d in view.tree.values() if d.kind is Kind.DIR)
    files = sum(1 for a in actual.values() if a.kind is Kind.PIN)
    return Report(layout, plan, cgroups, files, _collector_problems(layout, specs, gens))
