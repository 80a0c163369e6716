"""The whole cgroup tree from one cgroup-iterator read (mirror/cgtree.py, bpf/cgroup_tree.bpf.c)
builds the same desired tree as the cgroupfs walk, and the full pass that uses it (with the
mirror cached between deep passes) still converges and heals drift at the next deep pass."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest
from helpers import Mirror, mkdir_chain
from series_fixtures import CgroupChurn

from bpffs_sync import dirfd
from bpffs_sync.loader import LoadedStat
from bpffs_sync.mirror import bpffs, cgroupfs, cgtree
from bpffs_sync.mirror.diff import OpKind, diff
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.mirror.tree import DesiredView
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup

STATS = ("hist_oncpu",)


@pytest.fixture
def reader(kernel: None) -> Iterator[cgtree.TreeReader]:
    r = cgtree.TreeReader()
    try:
        yield r
    finally:
        r.close()


def _from_iterator(reader: cgtree.TreeReader, layout: Layout) -> tuple[DesiredView, int]:
    fd = cgroupfs.open_root(layout.cgroup_root)
    try:
        tree = reader.read(fd, layout.cgroup_root)
    finally:
        os.close(fd)
    assert tree.records is not None
    return cgroupfs.view_from_records(layout, STATS, tree.records), tree.count


def _assert_same(a: DesiredView, b: DesiredView) -> None:
    assert a.tree == b.tree
    assert a.ids == b.ids
    assert sorted(a.conflicts, key=repr) == sorted(b.conflicts, key=repr)
    assert a.opaque == b.opaque


def test_hostile_names_build_the_walks_tree(cgroup_root: str, reader: cgtree.TreeReader) -> None:
    """Spaces, 255-byte, non-UTF-8, dotted, stat-named (with children) names: byte-exact, same
    entries, ids and conflicts as the cgroupfs walk."""
    root = os.fsencode(cgroup_root)
    names = [b"with space", b"b" * 255, b"\xff\xfe-not-utf8", b"system.slice", b"a.b.c", b"\xc3\xa9t\xc3\xa9",
             b"-leading", b"hist_oncpu", b"x" * 200 + b".service"]
    for n in names:
        os.makedirs(root + b"/top/" + n + b"/child " + n[:50])
    os.makedirs(root + b"/top/hist_oncpu/below/more")
    layout = Layout("/nonexistent", cgroup_root)
    view, count = _from_iterator(reader, layout)
    _assert_same(view, cgroupfs.walk(layout, STATS))
    assert (("top", os.fsdecode(b"\xff\xfe-not-utf8")) in view.ids)
    assert ("top", "b" * 255) in view.ids
    assert [c.path for c in view.conflicts] == [("top", "hist_oncpu")]
    assert count == 1 + 1 + 2 * len(names) + 2  # root, top, each name and its child, below, more


def test_newline_names_cannot_exist(cgroup_root: str) -> None:
    """cgroupfs refuses a newline in a cgroup name (EINVAL), so no record ever carries one."""
    with pytest.raises(OSError) as exc:
        os.mkdir(os.path.join(cgroup_root, "a\nb"))
    assert exc.value.errno == errno.EINVAL


def test_chain_past_max_depth_is_the_walks(cgroup_root: str, reader: cgtree.TreeReader) -> None:
    """A chain deeper than dirfd.MAX_DEPTH (and than PATH_MAX): the same TOO_DEEP conflict and
    opaque subtree as the walk, every level above it mirrored."""
    mkdir_chain(cgroup_root, [b"d"] * (dirfd.MAX_DEPTH + 2))  # a path longer than PATH_MAX
    layout = Layout("/nonexistent", cgroup_root)
    view, count = _from_iterator(reader, layout)
    walked = cgroupfs.walk(layout, STATS)
    _assert_same(view, walked)
    assert count == dirfd.MAX_DEPTH + 3
    assert len(view.ids) == dirfd.MAX_DEPTH and len(view.opaque) == 1


def test_v1_tree_is_the_walks(v1_memory: str, reader: cgtree.TreeReader) -> None:
    """A v1 cgroup fd is accepted too; ids are the v1 hierarchy's own."""
    for rel in ("a/b", "a/c d", "e.f/g"):
        os.makedirs(os.path.join(v1_memory, rel))
    layout = Layout("/nonexistent", v1_memory)
    view, _ = _from_iterator(reader, layout)
    _assert_same(view, cgroupfs.walk(layout, STATS))
    assert view.ids[("a", "b")] == os.stat(os.path.join(v1_memory, "a/b")).st_ino


def test_reads_during_churn_are_whole_trees(cgroup_root: str, reader: cgtree.TreeReader) -> None:
    """Cgroups made and removed while reading (the walk holds cgroup_mutex): every read is one
    pre-order tree (no TornTree), and the last equals the walk once the churn stopped."""
    layout = Layout("/nonexistent", cgroup_root)
    with CgroupChurn(cgroup_root, seed=7) as churn:
        for _ in range(200):
            view, count = _from_iterator(reader, layout)
            assert count == len(view.ids)
    assert churn.during > 0
    _assert_same(_from_iterator(reader, layout)[0], cgroupfs.walk(layout, STATS))


def test_digest_skips_an_unchanged_tree(cgroup_root: str, reader: cgtree.TreeReader) -> None:
    """Given the last digest, an unchanged tree is not copied out; any change (a mkdir, an rmdir
    and a mkdir of the same name: a new id) gives another digest and the records."""
    os.makedirs(os.path.join(cgroup_root, "a/b"))
    fd = cgroupfs.open_root(cgroup_root)
    try:
        first = reader.read(fd, cgroup_root)
        again = reader.read(fd, cgroup_root, unless=first.digest)
        assert again.records is None and again.count == 3 and again.digest == first.digest
        os.rmdir(os.path.join(cgroup_root, "a/b"))
        os.mkdir(os.path.join(cgroup_root, "a/b"))
        renewed = reader.read(fd, cgroup_root, unless=first.digest)
        assert renewed.digest != first.digest and renewed.records is not None and renewed.count == 3
        assert reader.read(fd, cgroup_root).records == renewed.records  # the skipped ring left nothing behind
    finally:
        os.close(fd)


def test_ring_grows_for_a_larger_tree(cgroup_root: str) -> None:
    """A tree larger than the ring buffer: the reader grows it and reads the whole tree."""
    for i in range(200):
        os.mkdir(os.path.join(cgroup_root, f"{i:03d}" + "n" * 200))
    small = cgtree.TreeReader(ring_bytes=4096)
    try:
        layout = Layout("/nonexistent", cgroup_root)
        view, count = _from_iterator(small, layout)
        assert count == 201 and small.ring_bytes > 4096
        _assert_same(view, cgroupfs.walk(layout, STATS))
    finally:
        small.close()


# --- the full pass that uses it ------------------------------------------------------------------


@pytest.fixture
def loaded(mirror: Mirror) -> Iterator[LoadedStat]:
    stat = LoadedStat(mirror.layout, lookup("hist_oncpu"))
    try:
        yield stat
    finally:
        stat.close()


def _drift(mirror: Mirror, loaded: LoadedStat) -> int:
    """Ops a deep pass would make now (verify's view)."""
    want = cgroupfs.walk(mirror.layout, STATS)
    judge = Reconciler(mirror.layout, {"hist_oncpu": loaded}).generations.judge
    have = bpffs.walk(mirror.layout, bpffs.PinJudge(judge))
    return len(diff(want.tree, have.tree, want.conflicts, want.opaque | have.opaque).ops)


def test_drift_behind_its_back_heals_at_the_next_deep_pass(mirror: Mirror, loaded: LoadedStat) -> None:
    """A pin removed by hand and a stray directory: cached passes trust the mirror (no op), the
    next deep pass (every deep_every-th) repairs both."""
    os.makedirs(mirror.cg("jobs/a"))
    rec = Reconciler(mirror.layout, {"hist_oncpu": loaded}, deep_every=3)
    first = rec.reconcile()
    assert not first.cached and first.tree_source == "iterator" and first.walked == 3
    os.unlink(mirror.stat_path("jobs/a"))
    os.mkdir(os.path.join(mirror.bpffs, "cgroup", "stray"))
    for _ in range(2):  # passes 2 and 3 of every 3
        cached = rec.reconcile()
        assert cached.cached and not cached.plan
    assert _drift(mirror, loaded) == 2
    deep = rec.reconcile()
    assert not deep.cached
    assert {(op.kind, op.path) for op in deep.plan.ops} == {
        (OpKind.REMOVE, ("stray",)), (OpKind.PIN, ("jobs", "a", "hist_oncpu"))}
    assert _drift(mirror, loaded) == 0


def test_cached_full_pass_follows_cgroupfs(mirror: Mirror, loaded: LoadedStat) -> None:
    """Between deep passes the tree still comes from the kernel: a mkdir and an rmdir no hint
    reported are mirrored by the next (cached) full pass, scoped passes keep the cache right, and
    an unchanged tree is a no-op pass."""
    os.makedirs(mirror.cg("p/a"))
    os.mkdir(mirror.cg("gone"))
    rec = Reconciler(mirror.layout, {"hist_oncpu": loaded}, deep_every=1000)
    rec.reconcile()
    os.mkdir(mirror.cg("p/b"))
    os.rmdir(mirror.cg("gone"))
    res = rec.reconcile()
    assert res.cached and {op.kind for op in res.plan.ops} == {OpKind.PIN, OpKind.MKDIR, OpKind.REMOVE}
    assert _drift(mirror, loaded) == 0
    os.mkdir(mirror.cg("p/c"))
    rec.reconcile(("p", "c"))  # a hint: the cache learns the new pins from the scoped pass
    os.rmdir(mirror.cg("p/a"))
    rec.reconcile(("p", "a"))
    after = rec.reconcile()
    assert after.cached and not after.plan and _drift(mirror, loaded) == 0
    noop = rec.reconcile()
    assert noop.cached and not noop.plan and noop.walked == 4  # root, p, p/b, p/c
