"""diff(desired, actual) -> Plan. Pure: no I/O, unit-tested without root.

Every path is judged on its own: equal kind and identity -> nothing (or a chmod when only the
access bits differ); otherwise the actual entry goes and the desired one comes. Paths in or below
an opaque subtree (one a walk could not read) are left alone. So is a mount point (Kind.MOUNT:
another filesystem mounted below the mirror root) with what lies below it, and its ancestors are
never removed (they hold it); it is listed in Plan.mounts, drift that no op repairs. Removals run first, deepest first
(a directory is emptied before it is removed); creations follow, shallowest first (a directory
exists before its files).
Applying a plan and diffing again yields an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bpffs_sync.mirror.tree import Actual, ActualTree, Conflict, Desired, DesiredTree, Kind, under
from bpffs_sync.paths import DIR_MODE, RelPath, display


class OpKind(StrEnum):
    REMOVE = "remove"
    MKDIR = "mkdir"
    PIN = "pin"
    CHMOD = "chmod"


class Reason(StrEnum):
    MISSING = "missing"  # desired, absent
    STALE = "stale"  # present, not desired (e.g. its cgroup was removed)
    WRONG_CGROUP = "wrong_cgroup"  # a pin serving another cgroup than the one at its path
    WRONG_PROGRAM = "wrong_program"  # a pin whose program is not the current one of its stat
    WRONG_KIND = "wrong_kind"  # e.g. a directory where a stat file belongs
    BAD_MODE = "bad_mode"  # a mirror directory with the wrong permission bits
    MOUNT_POINT = "mount_point"  # another filesystem mounted below the mirror root (Plan.mounts; no op)


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    path: RelPath
    reason: Reason
    cgroup_id: int = 0
    stat: str = ""
    actual_cgroup_id: int = 0
    mode: int = DIR_MODE  # MKDIR, PIN, CHMOD: the access the entry gets
    gid: int = 0

    def describe(self) -> str:
        return f"{self.kind} {display(self.path)} ({self.reason})"


@dataclass(slots=True)
class Plan:
    ops: list[Op] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    mounts: list[RelPath] = field(default_factory=list)  # mount points left alone (drift, but no op)

    def __bool__(self) -> bool:
        """Is there anything to apply (mount points are not: nothing may be done about them)."""
        return bool(self.ops)

    def drift(self) -> list[Op]:
        """One op per drifted path: the creation for replacements, else the op itself."""
        seen: dict[RelPath, Op] = {}
        for op in self.ops:
            if op.kind is OpKind.REMOVE and op.reason is not Reason.STALE:
                continue
            seen.setdefault(op.path, op)
        return sorted(seen.values(), key=lambda op: (op.path, op.kind))


def _matches(want: Desired, have: Actual) -> Reason | None:
    """None when `have` fulfils `want`, else why it does not."""
    if want.kind is not have.kind:
        return Reason.WRONG_KIND
    if want.kind is Kind.PIN:
        if have.known and have.cgroup_id != want.cgroup_id:
            return Reason.WRONG_CGROUP
        if not have.prog_ok:
            return Reason.WRONG_PROGRAM
    return None


def _create(path: RelPath, want: Desired, reason: Reason, actual_cgroup_id: int = 0) -> Op:
    if want.kind is Kind.DIR:
        return Op(OpKind.MKDIR, path, reason, mode=want.mode, gid=want.gid)
    return Op(OpKind.PIN, path, reason, want.cgroup_id, want.stat, actual_cgroup_id, want.mode, want.gid)


def diff(desired: DesiredTree, actual: ActualTree, conflicts: list[Conflict] | None = None,
         opaque: set[RelPath] | None = None, *, check_access: bool = True) -> Plan:
    """The plan that makes actual equal desired. check_access=False: modes and groups are not ours
    to judge (the kernel's mirror sets them by its own rule)."""
    removes: list[Op] = []
    creates: list[Op] = []
    chmods: list[Op] = []
    mounts = sorted(path for path, have in actual.items() if have.kind is Kind.MOUNT)
    skip = (opaque or set()) | set(mounts)
    holding = {m[:depth] for m in mounts for depth in range(len(m))}  # ancestors of a mount point
    for path, have in actual.items():
        if under(path, skip):
            continue
        want = desired.get(path)
        if path in holding and (want is None or want.kind is not have.kind):
            continue  # cannot go while something is mounted below it
        if want is None:
            removes.append(Op(OpKind.REMOVE, path, Reason.STALE, actual_cgroup_id=have.cgroup_id))
            continue
        reason = _matches(want, have)
        if reason is not None:
            removes.append(Op(OpKind.REMOVE, path, reason, actual_cgroup_id=have.cgroup_id))
            creates.append(_create(path, want, reason, have.cgroup_id))
        elif check_access and (have.mode, have.gid) != (want.mode, want.gid):
            chmods.append(Op(OpKind.CHMOD, path, Reason.BAD_MODE, mode=want.mode, gid=want.gid))
    for path, want in desired.items():
        if path not in actual and not under(path, skip):
            creates.append(_create(path, want, Reason.MISSING))
    removes.sort(key=lambda op: (-len(op.path), op.path))
    creates.sort(key=lambda op: (len(op.path), op.kind is OpKind.PIN, op.path))
    chmods.sort(key=lambda op: op.path)
    return Plan(removes + creates + chmods, list(conflicts or []), mounts)
