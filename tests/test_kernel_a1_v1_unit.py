"""Approach 1 with cgroup v1 (kernel-approach1 patch 9), the parts that need no patched kernel: a
link's fdinfo (the only place its hierarchy is), the pin per hierarchy and what adoption accepts,
the top of the kernel's cgroup-v1/ a verify expects, and status's per-hierarchy rows. The guest
runs the same code against the kernel (kernel-approach1/tests/test_cli_kernel_v1.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import assert_one_line_error, cli

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1, sharing
from bpffs_sync.backends.statlink import PIN_OTHER, PIN_OURS
from bpffs_sync.errors import LibbpfError
from bpffs_sync.libbpf import CgroupStatLinkDesc
from bpffs_sync.mirror import forest
from bpffs_sync.paths import Layout
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs
from v1_controllers import Hierarchy

# What 7.3 with patch 9 prints for a link rooted at a v1 cgroup (the generic lines first).
FDINFO_V1 = ("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nlink_type:\tcgroup_stat\nlink_id:\t12\n"
             "prog_tag:\t4d9f0cd2b2a0a3e1\nprog_id:\t40\ncgroup_id:\t3\nhierarchy_id:\t5\nname:\thist_oncpu\n"
             "nr_files:\t4\nnr_errors:\t1\n")
# An image built before patch 9: no hierarchy_id line.
FDINFO_OLD = ("pos:\t0\nflags:\t02000002\nlink_type:\tcgroup_stat\nlink_id:\t7\nprog_id:\t9\ncgroup_id:\t1\n"
              "name:\thist_oncpu\nnr_files:\t12\nnr_errors:\t0\n")


@pytest.mark.unit
def test_fdinfo_of_a_v1_link() -> None:
    got = libbpf.parse_link_fdinfo(FDINFO_V1)
    assert got == libbpf.LinkFdinfo(cgroup_id=3, hierarchy_id=5, name="hist_oncpu", nr_files=4, nr_errors=1,
                                    hierarchy_reported=True)


@pytest.mark.unit
def test_fdinfo_without_a_hierarchy_line_is_the_default_hierarchy() -> None:
    """An older image's link can only be on the default hierarchy: 0, and the parse says it assumed it."""
    got = libbpf.parse_link_fdinfo(FDINFO_OLD)
    assert (got.cgroup_id, got.hierarchy_id, got.nr_files, got.hierarchy_reported) == (1, 0, 12, False)


@pytest.mark.unit
def test_fdinfo_of_a_detached_link() -> None:
    text = FDINFO_V1.replace("cgroup_id:\t3", "cgroup_id:\t0").replace("hierarchy_id:\t5", "hierarchy_id:\t0")
    got = libbpf.parse_link_fdinfo(text)
    assert (got.cgroup_id, got.hierarchy_id, got.hierarchy_reported) == (0, 0, True)


@pytest.mark.unit
@pytest.mark.parametrize(("text", "needle"), [
    (FDINFO_V1.replace("nr_files:\t4\n", ""), "no nr_files line"),
    ("pos:\t0\nflags:\t02\nlink_type:\titer\nlink_id:\t3\n", "no cgroup_id, nr_files, nr_errors, name line"),
    (FDINFO_V1.replace("hierarchy_id:\t5", "hierarchy_id:\t-1"), "hierarchy_id: '-1'"),
    (FDINFO_V1.replace("cgroup_id:\t3", "cgroup_id:\t"), "cgroup_id: ''"),
])
def test_fdinfo_that_is_not_a_cgroup_stat_links_is_an_error(text: str, needle: str) -> None:
    with pytest.raises(LibbpfError) as err:
        libbpf.parse_link_fdinfo(text, "link id 12")
    assert needle in str(err.value) and "link id 12" in str(err.value)


def test_fdinfo_of_a_real_fd_that_is_no_link() -> None:
    """link_fdinfo reads /proc/self/fdinfo: a pipe's has none of the link's lines."""
    r, w = os.pipe()
    try:
        with pytest.raises(LibbpfError, match="not a cgroup stat link"):
            libbpf.link_fdinfo(r, "pipe")
    finally:
        os.close(r)
        os.close(w)


def _link(cgroup_id: int = 3, hierarchy_id: int = 5, name: str = "hist_oncpu", *, link_id: int = 7,
          nr_files: int = 4, nr_errors: int = 0) -> CgroupStatLinkDesc:
    return CgroupStatLinkDesc(link_id=link_id, prog_id=9, cgroup_id=cgroup_id, name=name, nr_files=nr_files,
                              nr_errors=nr_errors, hierarchy_id=hierarchy_id)


@pytest.mark.unit
@pytest.mark.parametrize(("desc", "hierarchy_id", "verdict"), [
    (_link(), 5, PIN_OURS),
    (_link(hierarchy_id=0), 5, PIN_OTHER),  # the same cgroup id on v2: another cgroup
    (_link(hierarchy_id=6), 5, PIN_OTHER),  # ... on another v1 hierarchy
    (_link(), 0, PIN_OTHER),  # the v2 pin holding a v1 link of an equal id
    (_link(cgroup_id=0, hierarchy_id=0), 0, PIN_OTHER),  # detached
])
def test_adoption_checks_the_hierarchy(desc: CgroupStatLinkDesc, hierarchy_id: int, verdict: str) -> None:
    """Cgroup ids repeat across hierarchies: a pin is ours only with the root's id and hierarchy both."""
    assert kernel_a1.pin_verdict("link", desc, "hist_oncpu", 3, hierarchy_id) == verdict


@pytest.mark.unit
def test_pin_names_per_hierarchy() -> None:
    """v2 keeps the name earlier releases pinned; each v1 hierarchy its own, told apart by id."""
    assert kernel_a1.pin_name(0) == "native_link" == kernel_a1.A1_LINK_PIN
    assert kernel_a1.pin_name(5) == "native_link_h5"
    assert [sharing.is_a1_pin(n) for n in ("native_link", "native_link_h5", "native_link_h", "native_linkx",
                                           "native_link_hx", "cgroupfs_link_h5")] == [
        True, True, False, False, False, False]
    assert sharing.link_users(["stats", "collector", "native_link_h3"]) == {sharing.APPROACH_1}


def _tree(name: str, hid: int, controllers: tuple[str, ...], stats: tuple[str, ...] = ("hist_oncpu",)) -> forest.Tree:
    h = Hierarchy(name, hid, controllers, (f"/mnt/{name}",))
    return forest.Tree(Layout.for_v1(Layout("/sys/fs/bpf", "/sys/fs/cgroup"), h.mount_point, name, hid), stats, h)


CPU = _tree("cpu,cpuacct", 5, ("cpu", "cpuacct"))
NAMED = _tree("name=x", 9, (), ())


@pytest.mark.unit
def test_top_of_the_kernels_v1_tree_follows_the_links() -> None:
    """A hierarchy with a live link: its directory and a symlink per co-mounted controller; one
    without: none of them (the kernel removes them with its last entry)."""
    full: dict[str, str | None] = {"cpu,cpuacct": "", "cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct"}
    assert kernel_a1.top_drift([CPU], {5}, dict(full), prune=False) == []
    missing = kernel_a1.top_drift([CPU], {5}, {"cpu,cpuacct": ""}, prune=False)
    assert [(d.name, d.reason, d.target) for d in missing] == [("cpu", "missing", "cpu,cpuacct"),
                                                              ("cpuacct", "missing", "cpu,cpuacct")]
    left = kernel_a1.top_drift([CPU], set(), dict(full), prune=False)  # no link on it, entries left
    assert [(d.name, d.reason) for d in left] == [("cpu", "stale"), ("cpu,cpuacct", "stale"), ("cpuacct", "stale")]
    assert kernel_a1.top_drift([CPU, NAMED], set(), {}, prune=False) == []


@pytest.mark.unit
def test_top_with_all_prunes_what_no_selected_hierarchy_explains() -> None:
    wrong: dict[str, str | None] = {"cpu,cpuacct": "", "cpu": "memory", "cpuacct": "cpu,cpuacct", "memory": ""}
    got = kernel_a1.top_drift([CPU], {5}, wrong, prune=True)
    assert [(d.name, d.reason) for d in got] == [("cpu", "wrong_target"), ("memory", "stale")]
    # not pruning: an entry of an unselected hierarchy is not this verify's business
    assert [(d.name, d.reason) for d in kernel_a1.top_drift([CPU], {5}, wrong, prune=False)] == [
        ("cpu", "wrong_target")]


@pytest.mark.unit
def test_hierarchy_rows() -> None:
    """status: v2 always, then each hierarchy with a live link, named when mounted here; detached
    links count nowhere."""
    links = [_link(link_id=1, hierarchy_id=0, cgroup_id=1, nr_files=10),
             _link(link_id=2, nr_files=4, nr_errors=1), _link(link_id=3, name="memcg_histo", nr_files=4),
             _link(link_id=4, hierarchy_id=7, cgroup_id=2, nr_files=2),
             _link(link_id=5, cgroup_id=0, hierarchy_id=0, nr_files=0)]
    rows = kernel_a1.hierarchy_rows(links, {5: "cpu,cpuacct"})
    assert [(r["hierarchy_id"], r["hierarchy"], r["tree"], r["links"], r["link_ids"], r["nr_files"], r["nr_errors"])
            for r in rows] == [(0, "", "cgroup", 1, [1], 10, 0),
                               (5, "cpu,cpuacct", "cgroup-v1/cpu,cpuacct", 2, [2, 3], 8, 1),
                               (7, "", None, 1, [4], 2, 0)]
    assert kernel_a1.hierarchy_rows([], {})[0]["links"] == 0


@pytest.mark.unit
def test_targets_v2_then_each_v1_tree_with_its_stats() -> None:
    base = Layout("/sys/fs/bpf", "/sys/fs/cgroup/unified")
    got = kernel_a1.targets(base, [], [CPU, NAMED])
    assert [(t.cgroup_root, t.hierarchy_id, t.tree, [s.name for s in t.stats]) for t in got] == [
        ("/sys/fs/cgroup/unified", 0, "cgroup", []),
        ("/mnt/cpu,cpuacct", 5, "cgroup-v1/cpu,cpuacct", ["hist_oncpu"]),
        ("/mnt/name=x", 9, "cgroup-v1/name=x", [])]


@pytest.mark.parametrize("argv", [["run", "--kernel", "--v1", "memory"], ["verify", "--kernel", "--v1", "memory"],
                                  ["status", "--kernel"]])
def test_kernel_v1_on_a_stock_kernel_is_one_line(argv: list[str]) -> None:
    """No longer refused as v2-only: on a kernel without the series, the one line says what it lacks."""
    assert_one_line_error(cli(*argv), "kernel lacks")


@pytest.fixture
def scratch_bpffs() -> Iterator[str]:
    path = mount_bpffs()
    try:
        yield path
    finally:
        umount_bpffs(path)


def test_verify_v1_on_a_real_hierarchy_without_links(scratch_bpffs: str) -> None:
    """verify_v1 end to end on this host's pids hierarchy (a stock kernel: no cgroup stat link): no
    link, so the kernel would keep no directory for it and nothing is wanted (in sync); a directory
    cgroup-v1/pids left behind is stale drift, in the tree and at the top."""
    if not any(h.answers("pids") for h in forest.hierarchies()):
        pytest.skip("no v1 pids hierarchy mounted here")
    base = Layout(scratch_bpffs, "/sys/fs/cgroup/unified")
    clean = kernel_a1.verify_v1(base, forest.Selection(["pids"]))
    assert clean.in_sync, clean.to_text()
    assert [(r.layout.mirror, r.files) for r in clean.trees] == [("cgroup-v1/pids", 0)]
    os.makedirs(os.path.join(scratch_bpffs, "cgroup-v1", "pids"), mode=0o755)
    left = kernel_a1.verify_v1(base, forest.Selection(["pids"]))
    doc = left.to_json()
    assert not left.in_sync
    assert doc["top_drift"] == {"stale": [{"path": "pids", "kind": "dir"}]}
    assert doc["trees"][0]["drift"] == {"stale": [{"path": ".", "kind": "entry"}]}
