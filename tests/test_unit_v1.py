"""cgroup-v1 discovery and naming: pure parsing of odd mountinfo / proc fixtures, no root."""

from __future__ import annotations

import pytest

import v1_controllers
from bpffs_sync import mountinfo
from bpffs_sync.errors import KernelUnsupported
from bpffs_sync.mirror.forest import Selection, TopDrift, top_desired, top_diff
from bpffs_sync.paths import Layout
from v1_controllers import Hierarchy, default_stats, hierarchy_name, parse_hierarchies
from v1_controllers.discovery import parse_proc_cgroups, parse_self_cgroup

_BASE = Layout("/b", "/sys/fs/cgroup/unified")

pytestmark = pytest.mark.unit

PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t11\t1\t1
cpuacct\t11\t1\t1
blkio\t7\t1\t1
memory\t4\t13\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
perf_event\t12\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
"""

SELF_CGROUP = """12:perf_event,name=foo:/
11:cpu,cpuacct:/
9:name=systemd:/user.slice
8:pids:/
4:memory:/process_api/x
3:cpuset:/
13:name=dotted.name-1:/
0::/
"""

MOUNTINFO = "\n".join([
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    # cpuacct before cpu in the options: the name still follows subsystem-id order
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpuacct,cpu",
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    # the memory hierarchy mounted a second time, at a path with a space: one hierarchy
    "90 23 0:32 / /mnt/mem\\040two rw,relatime - cgroup cgroup rw,memory",
    # a bind mount of a memory subdirectory: not a root
    "91 23 0:32 /process_api /mnt/bind rw,relatime - cgroup cgroup rw,memory",
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime master:4 - cgroup cgroup rw,xattr,name=systemd",
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate",
    "42 31 0:39 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids,release_agent=/bin/x",
    "43 23 0:40 / /tmp/perf rw,relatime - cgroup none rw,perf_event,name=foo",
    "44 23 0:41 / /tmp/sp\\134ace\\011tab rw,relatime - cgroup none rw,name=dotted.name-1",
    "45 23 0:42 / /tmp/cpuset rw - cgroup cgroup rw,cpuset,noprefix,cpuset_v2_mode",
    "garbage line",
])


def hierarchies() -> dict[str, Hierarchy]:
    return {h.name: h for h in parse_hierarchies(mountinfo.parse(MOUNTINFO), PROC_CGROUPS, SELF_CGROUP)}


def test_mountinfo_unescapes_octal() -> None:
    """\\040 is a space, \\134 a backslash, \\011 a tab; other text passes through."""
    assert mountinfo.unescape("/mnt/mem\\040two") == "/mnt/mem two"
    assert mountinfo.unescape("/tmp/sp\\134ace\\011tab") == "/tmp/sp\\ace\ttab"
    assert mountinfo.unescape("/jöbs") == "/jöbs"


def test_mountinfo_fields() -> None:
    """Root, mount point, fstype and super options come from the right fields; junk is skipped."""
    entries = mountinfo.parse(MOUNTINFO)
    assert len(entries) == 11
    bind = next(e for e in entries if e.mount_point == "/mnt/bind")
    assert (bind.root, bind.fstype, bind.dev) == ("/process_api", "cgroup", "0:32")
    assert bind.super_options == ("rw", "memory")
    assert "nosuid" in entries[1].options


def test_hierarchies_named_as_proc_pid_cgroup_prints() -> None:
    """Controllers in subsystem-id order, then name=; every v1 hierarchy exactly once."""
    assert sorted(hierarchies()) == sorted(
        ["cpu,cpuacct", "memory", "name=systemd", "pids", "perf_event,name=foo", "name=dotted.name-1", "cpuset"])


def test_mounted_twice_is_one_hierarchy_and_bind_is_not_a_root() -> None:
    """The second memory mount adds a mount point; the bind mount of a subdirectory adds nothing."""
    mem = hierarchies()["memory"]
    assert mem.hierarchy_id == 4
    assert mem.mount_points == ("/sys/fs/cgroup/memory", "/mnt/mem two")
    assert mem.mount_point == "/sys/fs/cgroup/memory"


def test_hierarchy_ids() -> None:
    """Ids from /proc/cgroups for controllers, from /proc/self/cgroup for name-only hierarchies."""
    h = hierarchies()
    assert h["cpu,cpuacct"].hierarchy_id == 11
    assert h["name=systemd"].hierarchy_id == 9
    assert h["perf_event,name=foo"].hierarchy_id == 12
    assert h["name=dotted.name-1"].hierarchy_id == 13
    assert h["name=dotted.name-1"].mount_point == "/tmp/sp\\ace\ttab"


def test_symlinks_per_controller() -> None:
    """A symlink for each controller whose hierarchy has another name; none for name-only ones."""
    h = hierarchies()
    assert h["cpu,cpuacct"].symlinks() == {"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct"}
    assert h["memory"].symlinks() == {}
    assert h["name=systemd"].symlinks() == {}
    assert h["perf_event,name=foo"].symlinks() == {"perf_event": "perf_event,name=foo"}


def test_hierarchy_name_order() -> None:
    """The kernel's order, not the mount options' order."""
    order = [name for name, _hid, _on in parse_proc_cgroups(PROC_CGROUPS)]
    assert hierarchy_name(["net_prio", "net_cls"], "", order) == "net_cls,net_prio"
    assert hierarchy_name(["cpu"], "foo", order) == "cpu,name=foo"
    assert hierarchy_name([], "systemd", order) == "name=systemd"


def test_self_cgroup_skips_v2_line() -> None:
    """`0::/` is the v2 hierarchy, not a v1 name."""
    ids = parse_self_cgroup(SELF_CGROUP)
    assert ids["name=systemd"] == 9 and "" not in ids


def test_default_stats_by_controller() -> None:
    """memory -> memcg_histo; cpu/cpuacct -> hist_oncpu once; the plain table -> none."""
    assert default_stats(("memory",)) == ("memcg_histo",)
    assert default_stats(("cpu", "cpuacct")) == ("hist_oncpu",)
    assert default_stats(("net_cls", "net_prio")) == ()
    assert default_stats(("cpu", "memory")) == ("hist_oncpu", "memcg_histo")
    assert v1_controllers.controller("memory").STATS == ("memcg_histo",)


def test_unknown_controller_is_kernel_unsupported() -> None:
    """Never a silent skip: a name nobody knows raises, naming it."""
    with pytest.raises(v1_controllers.UnknownController, match="unknown controller") as exc:
        v1_controllers.controller("nosuch")
    assert exc.value.name == "nosuch"
    with pytest.raises(KernelUnsupported, match="bogus"):
        Selection(["cpu,bogus"])
    Selection(["all", "name=anything", "cpu,cpuacct", "/sys/fs/cgroup/memory/x"])  # all fine


def test_selection_resolves_controller_hierarchy_and_all() -> None:
    """`cpu` finds cpu,cpuacct; `all` every hierarchy; a name not mounted is pending."""
    hs = list(hierarchies().values())
    trees = Selection(["cpu"]).trees(_BASE, hs)
    assert [t.key for t in trees] == ["cgroup-v1/cpu,cpuacct"]
    assert trees[0].layout.hierarchy_id == 11 and trees[0].stats == ("hist_oncpu",)
    assert trees[0].layout.mirror_root == "/b/cgroup-v1/cpu,cpuacct"
    assert len(Selection(["all"]).trees(_BASE, hs)) == len(hs)
    assert Selection(["freezer", "memory", "name=nope"]).pending(hs) == ["freezer", "name=nope"]
    assert [t.key for t in Selection(["name=foo"]).trees(_BASE, hs)] == ["cgroup-v1/perf_event,name=foo"]


def test_top_diff() -> None:
    """Hierarchy dirs and controller symlinks: missing, wrong target, and stale only when pruning."""
    trees = Selection(["cpu", "memory"]).trees(_BASE, list(hierarchies().values()))
    desired = top_desired(trees)
    assert desired == {"cpu,cpuacct": "", "cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct", "memory": ""}
    actual: dict[str, str | None] = {"cpu,cpuacct": "", "cpu": "elsewhere", "memory": None, "old": ""}
    assert top_diff(desired, actual, prune=False) == [
        TopDrift("cpu", "wrong_target", "cpu,cpuacct"),
        TopDrift("cpuacct", "missing", "cpu,cpuacct"),
        TopDrift("memory", "wrong_kind", ""),
    ]
    assert top_diff(desired, actual, prune=True)[-1] == TopDrift("old", "stale")
    assert top_diff(desired, {**desired}, prune=True) == []
