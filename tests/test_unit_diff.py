"""diff() is pure: these tests need no root."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bpffs_sync.mirror.diff import OpKind, Plan, Reason, diff
from bpffs_sync.mirror.tree import Actual, ActualTree, Desired, DesiredTree, Kind
from bpffs_sync.paths import DIR_MODE, FILE_MODE, RelPath

pytestmark = pytest.mark.unit
S = "hist_oncpu"


def desired(cgroups: dict[RelPath, int]) -> DesiredTree:
    tree: DesiredTree = {}
    for rel, cgid in cgroups.items():
        tree[rel] = Desired(Kind.DIR)
        tree[(*rel, S)] = Desired(Kind.PIN, cgid, S, FILE_MODE)
    return tree


def mirror_of(tree: DesiredTree) -> ActualTree:
    return {p: Actual(d.kind, mode=d.mode, gid=d.gid, cgroup_id=d.cgroup_id) for p, d in tree.items()}


def apply_in_memory(plan: Plan, want: DesiredTree, have: ActualTree) -> ActualTree:
    """What apply() does, on the model: lets us check that a second diff is empty."""
    out = dict(have)
    for op in plan.ops:
        if op.kind is OpKind.REMOVE:
            for p in [p for p in out if p[: len(op.path)] == op.path]:
                del out[p]
        elif op.kind is OpKind.MKDIR:
            assert op.path[:-1] in out or op.path == (), f"parent of {op.path} missing when made"
            out[op.path] = Actual(Kind.DIR, mode=op.mode, gid=op.gid)
        elif op.kind is OpKind.PIN:
            assert op.path[:-1] in out, f"directory of {op.path} missing when pinned"
            out[op.path] = Actual(Kind.PIN, mode=op.mode, gid=op.gid, cgroup_id=op.cgroup_id)
        elif op.kind is OpKind.CHMOD:
            out[op.path] = replace(out[op.path], mode=op.mode, gid=op.gid)
    return out


TREE = {(): 1, ("jobs",): 10, ("jobs", "a"): 11, ("jobs", "b"): 12, ("sys.slice",): 20}


def test_in_sync_is_empty_plan() -> None:
    """A mirror equal to the desired tree yields no ops."""
    want = desired(TREE)
    assert not diff(want, mirror_of(want))


def test_empty_mirror_is_built_parents_first() -> None:
    """From nothing, every dir is made before anything inside it."""
    want = desired(TREE)
    plan = diff(want, {})
    assert {op.kind for op in plan.ops} == {OpKind.MKDIR, OpKind.PIN}
    assert all(op.reason is Reason.MISSING for op in plan.ops)
    have = apply_in_memory(plan, want, {})
    assert not diff(want, have)


def test_stale_subtree_removed_deepest_first() -> None:
    """A removed cgroup's subtree goes, children before their directory."""
    want = desired(TREE)
    have = mirror_of(desired({**TREE, ("old",): 30, ("old", "x"): 31}))
    plan = diff(want, have)
    assert [op.kind for op in plan.ops] == [OpKind.REMOVE] * 4
    paths = [op.path for op in plan.ops]
    assert paths.index(("old", "x")) > paths.index(("old", "x", S))
    assert paths[-1] == ("old",)
    assert not diff(want, apply_in_memory(plan, want, have))


def test_wrong_cgroup_is_replaced() -> None:
    """A pin serving another cgroup (rmdir + mkdir of the same name) is unpinned and re-pinned."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs", "a", S)] = Actual(Kind.PIN, cgroup_id=99)
    plan = diff(want, have)
    assert [(op.kind, op.reason) for op in plan.ops] == [
        (OpKind.REMOVE, Reason.WRONG_CGROUP), (OpKind.PIN, Reason.WRONG_CGROUP)]
    assert plan.ops[1].cgroup_id == 11 and plan.ops[1].actual_cgroup_id == 99
    assert [op.reason for op in plan.drift()] == [Reason.WRONG_CGROUP]


def test_wrong_program_is_replaced() -> None:
    """A pin of an old program generation is replaced."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs", S)] = Actual(Kind.PIN, cgroup_id=10, prog_ok=False)
    plan = diff(want, have)
    assert {op.reason for op in plan.ops} == {Reason.WRONG_PROGRAM}


def test_directory_where_file_belongs() -> None:
    """A user-made directory named like a stat file is removed with its contents, then pinned."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs", S)] = Actual(Kind.DIR, mode=DIR_MODE)
    have[("jobs", S, "junk")] = Actual(Kind.OTHER)
    plan = diff(want, have)
    kinds = [(op.kind, op.path) for op in plan.ops]
    assert kinds[0] == (OpKind.REMOVE, ("jobs", S, "junk"))
    assert (OpKind.PIN, ("jobs", S)) in kinds
    assert not diff(want, apply_in_memory(plan, want, have))


def test_bad_mode_is_chmod_only() -> None:
    """A directory left at mode 000 (interrupted dotted mkdir) is repaired, not rebuilt."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs",)] = Actual(Kind.DIR, mode=0)
    plan = diff(want, have)
    assert [(op.kind, op.reason) for op in plan.ops] == [(OpKind.CHMOD, Reason.BAD_MODE)]


def test_foreign_object_is_stale() -> None:
    """Something that is not a cgroup-iterator link (a map pin, say) inside the mirror is removed."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs", "a", "map")] = Actual(Kind.OTHER)
    plan = diff(want, have)
    assert [(op.kind, op.path, op.reason) for op in plan.ops] == [
        (OpKind.REMOVE, ("jobs", "a", "map"), Reason.STALE)]


def test_everything_at_once_converges_in_one_pass() -> None:
    """Missing, stale, wrong and bad-mode drift together: one applied plan, then nothing."""
    want = desired({**TREE, ("new",): 40, ("new", "deep"): 41})
    have = mirror_of(desired({**TREE, ("gone",): 50}))
    have[("jobs", "b", S)] = Actual(Kind.PIN, cgroup_id=77)
    have[("sys.slice",)] = Actual(Kind.DIR, mode=0)
    plan = diff(want, have)
    assert not diff(want, apply_in_memory(plan, want, have))


def test_file_access_drift_is_a_chmod() -> None:
    """A stat file with the right identity but other mode or group is fixed in place, not re-pinned."""
    want = desired(TREE)
    have = mirror_of(want)
    have[("jobs", S)] = replace(have[("jobs", S)], mode=0o600)
    have[("jobs", "a", S)] = replace(have[("jobs", "a", S)], gid=7)
    plan = diff(want, have)
    assert [(op.kind, op.path, op.mode, op.gid) for op in plan.ops] == [
        (OpKind.CHMOD, ("jobs", "a", S), FILE_MODE, 0), (OpKind.CHMOD, ("jobs", S), FILE_MODE, 0)]
    assert not diff(want, apply_in_memory(plan, want, have))


def test_opaque_subtree_is_left_alone() -> None:
    """Nothing is made or removed in or below a subtree a walk could not read; the rest converges."""
    want = desired(TREE)
    have = mirror_of(want)
    del have[("jobs", "a", S)]  # missing, but inside the opaque subtree
    have[("jobs", "b", "old")] = Actual(Kind.DIR, mode=DIR_MODE)  # stale, but opaque too
    del have[("sys.slice", S)]  # missing outside: still made
    plan = diff(want, have, opaque={("jobs", "a"), ("jobs", "b")})
    assert [(op.kind, op.path) for op in plan.ops] == [(OpKind.PIN, ("sys.slice", S))]
