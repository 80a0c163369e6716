"""cgroup v1, as the RFC claims for free: a link whose root is a v1 cgroup puts bpf.stat.<name> in
that hierarchy's directories and follows its mkdir/rmdir: a named hierarchy and co-mounted
cpu,cpuacct, each mounted privately by the test (tests/v1_scratch.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from conftest import FILE, cgroups_under, files_under, link_desc, make_tree, read

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a2
from bpffs_sync.mirror.forest import Selection, hierarchies
from bpffs_sync.paths import Layout

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from v1_scratch import mounted_v1_hierarchy


def hierarchy_id_of(mount_point: str) -> int:
    return next(h.hierarchy_id for h in hierarchies() if mount_point in h.mount_points)


@pytest.fixture(params=["none,name=a2test", "cpu,cpuacct"])
def v1_root(request: pytest.FixtureRequest) -> Iterator[str]:
    """A v1 hierarchy mounted for the test: a named one, and co-mounted controllers."""
    try:
        with mounted_v1_hierarchy(request.param) as path:
            yield path
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot mount a v1 hierarchy with -o {request.param}: {err.stderr!r}")


def test_link_at_v1_root_covers_the_hierarchy(stat: kernel_a2.CgroupfsStat, v1_root: str) -> None:
    """A link at a v1 hierarchy's root: a file in every cgroup there, following mkdir and rmdir;
    the link info names the hierarchy; each file reads its own cgroup."""
    make_tree(v1_root, "a/b", "c.scope")
    fd = stat.attach(v1_root)
    try:
        desc = link_desc(fd)
        assert desc.hierarchy_id == hierarchy_id_of(v1_root) != 0
        assert files_under(v1_root) == cgroups_under(v1_root)
        os.mkdir(os.path.join(v1_root, "a", "new"))
        assert os.path.isfile(os.path.join(v1_root, "a", "new", FILE))
        os.rmdir(os.path.join(v1_root, "a", "new"))
        d = os.path.join(v1_root, "a", "b")
        assert read(os.path.join(d, FILE)).splitlines()[0] == f"cgroup_id: {os.stat(d).st_ino}"
        assert link_desc(fd).nr_files == len(cgroups_under(v1_root))
    finally:
        libbpf.link_detach(fd)
        os.close(fd)
    assert files_under(v1_root) == set()


def test_same_name_on_v1_and_v2_are_separate_links(stat: kernel_a2.CgroupfsStat, v1_root: str, cg: str,
                                                   link_fds: list[int]) -> None:
    """Names are unique per hierarchy: the same stat links on v2 and on a v1 hierarchy at once."""
    make_tree(v1_root, "x")
    link_fds.append(stat.attach(cg))
    fd = stat.attach(os.path.join(v1_root, "x"))
    try:
        assert files_under(v1_root) == {"x"}
        assert files_under(cg) == {"."}
    finally:
        libbpf.link_detach(fd)
        os.close(fd)


def test_backend_v1_selection_attach_and_verify(pins_fs: str, cg: str, v1_root: str) -> None:
    """run --approach 2 --v1 <path>: the backend links the hierarchy's stats at that subtree and
    verify (v2 + that hierarchy) is in sync."""
    make_tree(v1_root, "job/a")
    layout = Layout(pins_fs, cg)
    sel = Selection([os.path.join(v1_root, "job")])
    try:
        outcomes = kernel_a2.attach_stats(layout, [], selection=sel)
        if not outcomes:
            pytest.skip(f"no default stat for the controllers of {v1_root}")
        assert {o.hierarchy_id for o in outcomes} == {hierarchy_id_of(v1_root)}
        for o in outcomes:
            assert files_under(os.path.join(v1_root, "job"), o.file) == {".", "a"}
        report = kernel_a2.verify(cg, sel, layout)
        assert report.in_sync, report.to_text()
    finally:
        kernel_a2.detach_all()


def test_no_v1_cgroup_can_be_renamed_to_a_bpf_stat_name(stat: kernel_a2.CgroupfsStat, v1_root: str,
                                                        link_fds: list[int]) -> None:
    """v1 cgroups can be renamed (v2 ones cannot): a rename to a bpf.stat.* name is EINVAL, as a
    mkdir of one is, so no v1 cgroup can come to shadow a link's file either."""
    make_tree(v1_root, "job")
    link_fds.append(stat.attach(v1_root))
    errnos = []
    for name in (FILE, "bpf.stat.later"):
        with pytest.raises(OSError) as exc:
            os.rename(os.path.join(v1_root, "job"), os.path.join(v1_root, name))
        errnos.append(exc.value.errno)
    os.rename(os.path.join(v1_root, "job"), os.path.join(v1_root, "job2"))  # other names still move
    # onto the file itself the VFS answers first (a directory onto a file); any other name: EINVAL
    assert errnos[0] in (errno.ENOTDIR, errno.EEXIST, errno.EINVAL)
    assert errnos[1] == errno.EINVAL
    assert files_under(v1_root) == {".", "job2"}


def test_umount_with_a_link_on_the_root_lets_the_hierarchy_go(stat: kernel_a2.CgroupfsStat) -> None:
    """A link on the root of a childless v1 hierarchy, then the last umount: the hierarchy ends and
    the link is detached at once (cgroup_id 0, no file), so a new mount of the same options succeeds
    at once instead of retrying in cgroup1_get_tree() for as long as the link lives (v1 of the
    series: until its fd was closed, forever if the link lived only through a pin)."""
    options = "none,name=a2remount"
    path = tempfile.mkdtemp(prefix="bpffs-sync-v1-remount-")
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True)
        fd = stat.attach(path)
        try:
            desc = link_desc(fd)
            assert (desc.nr_files, desc.hierarchy_id != 0) == (1, True)
            subprocess.run(["umount", path], check=True)
            after = link_desc(fd)
            # a new mount of the hierarchy: with the link still pinning the dying root this loops
            remount = subprocess.run(["timeout", "60", "mount", "-t", "cgroup", "-o", options, "none", path],
                                     check=False, capture_output=True, text=True)
            assert remount.returncode == 0, f"remount: exit {remount.returncode} {remount.stderr.strip()}"
            assert (after.cgroup_id, after.hierarchy_id, after.nr_files) == (0, 0, 0)
            assert not os.path.exists(os.path.join(path, FILE))
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", path], check=False, capture_output=True)
        os.rmdir(path)
