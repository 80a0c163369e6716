"""What `verify` reports: the plan a pass would apply, as drift grouped by reason, plus problems a
tree walk cannot see (collectors, kernel links). The same Report serves every backend: the
user-space mirror (backends/user_space.py) and the kernel's (backends/kernel_a1.py), since both are a
desired tree (cgroupfs) diffed against an actual one (bpffs).

Names are data: to_text escapes every name and problem it prints (printable.escape: a cgroup named
"\x1b[2J" is shown, never obeyed); to_json leaves names as they are and the CLI makes the
document valid UTF-8 (printable.json_safe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bpffs_sync import dirfd
from bpffs_sync.mirror.diff import OpKind, Plan, Reason
from bpffs_sync.mirror.forest import TopDrift, v1_root
from bpffs_sync.mirror.tree import ConflictReason
from bpffs_sync.paths import Layout, RelPath, display
from bpffs_sync.printable import escape

_CONFLICT_TEXT = {
    ConflictReason.SHADOWED: "cgroup named like a stat file",
    ConflictReason.UNREADABLE: "cgroup directory unreadable",
    ConflictReason.TOO_DEEP: "cgroup too deep",
}


def _shown(path: RelPath) -> str:
    """A relative path as text output shows it: display(), every name escaped."""
    return escape(display(path))


@dataclass(slots=True)
class Report:
    layout: Layout
    plan: Plan
    cgroups: int
    files: int
    collector_problems: list[str] = field(default_factory=list)
    link_problems: list[str] = field(default_factory=list)  # kernel mirrors: per-link (counts, program, root)
    extra: dict[str, Any] = field(default_factory=dict)  # kernel mirrors: "approach", "links"

    @property
    def in_sync(self) -> bool:
        return not self.drifted

    @property
    def drifted(self) -> int:
        """Entries out of step: the plan's, mount points left alone, collector and link problems."""
        return (len(self.plan.drift()) + len(self.plan.mounts) + len(self.collector_problems)
                + len(self.link_problems))

    @property
    def conflicts(self) -> list[str]:
        """The conflicting cgroups' paths relative to the cgroup root."""
        return [display(c.path) for c in self.plan.conflicts]

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
        for path in self.plan.mounts:
            drift.setdefault(str(Reason.MOUNT_POINT), []).append({"path": display(path), "kind": "mount"})
        return {
            "in_sync": self.in_sync,
            "bpffs": self.layout.bpffs,
            "cgroup_root": self.layout.cgroup_root,
            "mirror_root": self.layout.mirror_root,
            "cgroups": self.cgroups,
            "files": self.files,
            "drift": drift,
            "collector_problems": self.collector_problems,
            "link_problems": self.link_problems,
            **self.extra,
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
            lines.append(f"{op.reason!s:<14} {_shown(op.path)}{extra}")
        lines.extend(f"{Reason.MOUNT_POINT!s:<14} {_shown(p)} ({dirfd.MOUNTED})" for p in self.plan.mounts)
        lines.extend(f"{'collector':<14} {escape(p)}" for p in self.collector_problems)
        lines.extend(f"{'link':<14} {escape(p)}" for p in self.link_problems)
        lines.extend(f"{'conflict':<14} {_shown(c.path)} ({_CONFLICT_TEXT[c.reason]}"
                     f"{': ' + escape(c.detail) if c.detail else ''}; not mirrored)" for c in self.plan.conflicts)
        verdict = "in sync" if self.in_sync else f"DRIFT: {self.drifted} entries"
        lines.append(f"{verdict}: {self.cgroups} cgroups, {self.files} stat files under "
                     f"{escape(self.layout.mirror_root)}")
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
            what = f" -> {escape(d.target)} (symlink)" if d.target else ""
            lines.append(f"{d.reason:<14} {escape(d.name)}{what}")
        verdict = "in sync" if not self.top else f"DRIFT: {len(self.top)} entries"
        lines.append(f"{verdict}: {escape(v1_root(self.bpffs))} (hierarchy directories and controller symlinks)")
        for r in self.trees:
            lines.append("")
            lines.append(f"== {escape(r.layout.mirror)} <- {escape(r.layout.cgroup_root)}")
            lines.append(r.to_text())
        return "\n".join(lines)
