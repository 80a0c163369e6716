"""A mount point in the actual tree (Kind.MOUNT), as diff and verify's Report see it. No root needed."""

from __future__ import annotations

import pytest

from bpffs_sync.mirror.diff import OpKind, diff
from bpffs_sync.mirror.drift import Report
from bpffs_sync.mirror.tree import Actual, ActualTree, Desired, DesiredTree, Kind
from bpffs_sync.paths import FILE_MODE, Layout

pytestmark = pytest.mark.unit
S = "hist_oncpu"
MOUNT = Actual(Kind.MOUNT, detail="another filesystem is mounted here: left alone")


def _desired(*cgroups: tuple[str, ...]) -> DesiredTree:
    tree: DesiredTree = {(): Desired(Kind.DIR), (S,): Desired(Kind.PIN, 1, S, FILE_MODE)}
    for i, rel in enumerate(cgroups, start=2):
        tree[rel] = Desired(Kind.DIR)
        tree[(*rel, S)] = Desired(Kind.PIN, i, S, FILE_MODE)
    return tree


def test_nothing_is_planned_at_or_below_a_mount_point() -> None:
    """A cgroup whose mirror directory has a filesystem on it: no chmod, no mkdir, no pin, no
    removal there or below; the mount point is listed, and nothing else is drift."""
    want = _desired(("x",), ("x", "y"))
    have: ActualTree = {(): Actual(Kind.DIR, 0o755), (S,): Actual(Kind.PIN, FILE_MODE, 0, 1), ("x",): MOUNT}
    plan = diff(want, have)
    assert not plan.ops and plan.mounts == [("x",)]
    assert not plan  # nothing to apply


def test_the_directories_holding_a_mount_point_are_not_removed() -> None:
    """x's cgroup is gone but a filesystem is mounted on x/m: x stays (it holds the mount point),
    its stale pin goes."""
    want = _desired()
    have: ActualTree = {(): Actual(Kind.DIR, 0o755), (S,): Actual(Kind.PIN, FILE_MODE, 0, 1),
                        ("x",): Actual(Kind.DIR, 0o755), ("x", S): Actual(Kind.PIN, FILE_MODE, 0, 7),
                        ("x", "m"): MOUNT}
    plan = diff(want, have)
    assert [(op.kind, op.path) for op in plan.ops] == [(OpKind.REMOVE, ("x", S))]
    assert plan.mounts == [("x", "m")]


def test_verify_reports_a_mount_point_as_drift_of_its_own() -> None:
    """verify: not in sync; `mount_point x` in text, drift.mount_point in JSON; no `missing`."""
    want = _desired(("x",))
    have: ActualTree = {(): Actual(Kind.DIR, 0o755), (S,): Actual(Kind.PIN, FILE_MODE, 0, 1), ("x",): MOUNT}
    report = Report(Layout("/b", "/c"), diff(want, have), cgroups=2, files=1)
    assert not report.in_sync
    lines = report.to_text().splitlines()
    assert lines[0].split()[:2] == ["mount_point", "x"] and lines[-1].startswith("DRIFT: 1 entries"), lines
    assert report.to_json()["drift"] == {"mount_point": [{"path": "x", "kind": "mount"}]}
