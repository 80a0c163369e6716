"""cgroup v1 in the kernel's mirror (patch 9): a link whose root is a v1 cgroup puts its files in
<bpffs>/cgroup-v1/<hierarchy>/<path>/, the hierarchy named as /proc/<pid>/cgroup names it, with a
symlink per controller not named like it; mkdir, rmdir and rename follow; the unmount that ends
a childless hierarchy detaches its links (a new mount does not wait for them). Each hierarchy is
mounted privately by the test (tests/v1_scratch.py) and unmounted after."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import link_desc
from series_fixtures import LoadedStats
from test_windows import HIT_TIMEOUT, WIN_INDEX, WIN_POPULATE, create_in_window, load, window  # noqa: F401 (fixture)

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from v1_scratch import mounted_v1_hierarchy

NAME = "hist_oncpu"


def hierarchy_name(options: str) -> str:
    """The name /proc/<pid>/cgroup gives a hierarchy mounted with these options (controllers in
    subsystem order, then name=)."""
    opts = [o for o in options.split(",") if o != "none"]
    named = [o for o in opts if o.startswith("name=")]
    order = ("cpuset", "cpu", "cpuacct", "io", "blkio", "memory", "devices", "freezer", "net_cls",
             "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc")
    ctrls = sorted((o for o in opts if not o.startswith("name=")), key=order.index)
    return ",".join(ctrls + named)


def v1_files(top: str, name: str = NAME) -> set[str]:
    """The cgroup paths (relative, "." for the root) whose mirror directory under top holds name."""
    return {os.path.relpath(d, top) for d, _dirs, files in os.walk(top) if name in files}


def v1_cgroups(root: str) -> set[str]:
    return {os.path.relpath(d, root) for d, _dirs, _files in os.walk(root)}


def first_line(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


def mount_again(options: str, path: str) -> None:
    """A new mount of a v1 hierarchy with these options must succeed at once: with a link keeping
    the ended hierarchy's root, cgroup1_get_tree() would retry for as long as the link lived."""
    remount = subprocess.run(["timeout", "60", "mount", "-t", "cgroup", "-o", options, "none", path],
                             check=False, capture_output=True, text=True)
    assert remount.returncode == 0, f"remount: exit {remount.returncode} {remount.stderr.strip()}"


@pytest.fixture(params=["none,name=a1test", "cpu,cpuacct"])
def v1(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(mount point, hierarchy name): a named hierarchy, and co-mounted controllers."""
    with contextlib.ExitStack() as stack:
        try:  # only the mount may skip the test, not its teardown
            path = stack.enter_context(mounted_v1_hierarchy(request.param))
        except OSError as err:  # v1_scratch's mount failure
            pytest.skip(f"cannot mount a v1 hierarchy with -o {request.param}: {err}")
        yield path, hierarchy_name(request.param)


@pytest.fixture
def named_v1() -> Iterator[str]:
    with mounted_v1_hierarchy("none,name=a1rename") as path:
        yield path


def test_link_at_v1_root_mirrors_the_hierarchy(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                              v1: tuple[str, str]) -> None:
    """cgroup-v1/<hierarchy>/ holds a file for every cgroup of the hierarchy (dots kept), a symlink
    per co-mounted controller; mkdir and rmdir follow; a file reads its own v1 cgroup; after
    detach nothing of the hierarchy is left in cgroup-v1/."""
    root, hname = v1
    for rel in ("a/b", "c.scope"):
        os.makedirs(os.path.join(root, rel))
    fd = stat.attach(root)
    top = os.path.join(mirror_fs, "cgroup-v1", hname)
    v1_top = os.path.join(mirror_fs, "cgroup-v1")
    try:
        assert v1_files(top) == v1_cgroups(root)
        links = {n: os.readlink(os.path.join(v1_top, n)) for n in os.listdir(v1_top)
                 if os.path.islink(os.path.join(v1_top, n))}
        want = {c: hname for c in hname.split(",") if not c.startswith("name=") and c != hname}
        assert links == want
        assert sorted(os.listdir(v1_top)) == sorted([hname, *want])
        d = os.path.join(root, "a", "b")
        assert first_line(os.path.join(top, "a", "b", NAME)) == f"cgroup_id: {os.stat(d).st_ino}"
        os.mkdir(os.path.join(root, "a", "new"))
        assert os.path.isfile(os.path.join(top, "a", "new", NAME))
        os.rmdir(os.path.join(root, "a", "new"))
        assert not os.path.exists(os.path.join(top, "a", "new"))
        assert link_desc(fd).nr_files == len(v1_cgroups(root))
    finally:
        libbpf.link_detach(fd)
        os.close(fd)
    assert os.listdir(v1_top) == []


def test_v1_and_v2_links_of_one_name(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                     v1: tuple[str, str], link_fds: list[int]) -> None:
    """File names are unique per hierarchy: one stat linked on v2 and on a v1 hierarchy at once,
    each in its own tree."""
    root, hname = v1
    os.mkdir(os.path.join(root, "x"))
    link_fds.append(stat.attach(cg))
    link_fds.append(stat.attach(os.path.join(root, "x")))
    assert v1_files(os.path.join(mirror_fs, "cgroup-v1", hname)) == {"x"}
    assert os.path.isfile(os.path.join(mirror_fs, "cgroup", os.path.relpath(cg, "/sys/fs/cgroup"), NAME))


def test_rename_moves_the_entries(stat: kernel_a1.KernelMirror, mirror_fs: str, named_v1: str,
                                  loaded_stats: LoadedStats, link_fds: list[int]) -> None:
    """A v1 rename moves the cgroup's mirror directory, its subtree with it. A new name a link's
    file took first (the file wins) leaves the subtree without entries, each file lost counted in
    its link's nr_errors; the next rename to a free name mirrors it again."""
    root = named_v1
    top = os.path.join(mirror_fs, "cgroup-v1", "name=a1rename")
    os.makedirs(os.path.join(root, "job", "a"))
    fd = stat.attach(root)
    link_fds.append(fd)
    os.rename(os.path.join(root, "job"), os.path.join(root, "job2"))
    assert v1_files(top) == {".", "job2", "job2/a"}
    a = os.path.join(root, "job2", "a")
    assert first_line(os.path.join(top, "job2", "a", NAME)) == f"cgroup_id: {os.stat(a).st_ino}"

    # a second link whose file is named "x", then the cgroup renamed to "x"
    other = loaded_stats.get(kernel_a1.KernelMirror, Layout(mirror_fs, "/sys/fs/cgroup"), lookup("hist_oncpu"))
    x_fd = other.attach(root, name="x")
    link_fds.append(x_fd)
    errors = link_desc(fd).nr_errors, link_desc(x_fd).nr_errors
    os.rename(os.path.join(root, "job2"), os.path.join(root, "x"))
    assert os.path.isfile(os.path.join(top, "x"))  # the link's file, made first
    assert v1_files(top) == {"."}
    assert v1_files(top, "x") == {"."}
    # each link lost its files of job2 and job2/a
    assert (link_desc(fd).nr_errors, link_desc(x_fd).nr_errors) == (errors[0] + 2, errors[1] + 2)
    assert link_desc(fd).nr_files == 1

    os.rename(os.path.join(root, "x"), os.path.join(root, "job3"))
    assert v1_files(top) == {".", "job3", "job3/a"}
    assert v1_files(top, "x") == {".", "job3", "job3/a"}
    assert link_desc(fd).nr_files == 3


def test_unmount_of_a_childless_hierarchy_detaches_its_links(stat: kernel_a1.KernelMirror,
                                                             mirror_fs: str) -> None:
    """A link on the root of a childless v1 hierarchy, then its last umount: the hierarchy ends
    and the link is detached there (cgroup_id 0, no file), so a new mount with the same options
    succeeds at once. Were the link to keep its reference, the mount would retry in
    cgroup1_get_tree() as long as the link lived (its fd here; for ever through a pin)."""
    options = "none,name=a1remount"
    path = tempfile.mkdtemp(prefix="bpffs-sync-v1-remount-")
    top = os.path.join(mirror_fs, "cgroup-v1", "name=a1remount")
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True)
        fd = stat.attach(path)
        try:
            assert (link_desc(fd).nr_files, os.path.isfile(os.path.join(top, NAME))) == (1, True)
            subprocess.run(["umount", path], check=True)
            after = link_desc(fd)
            mount_again(options, path)
            assert (after.cgroup_id, after.nr_files) == (0, 0)
            assert not os.path.exists(top)
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", path], check=False, capture_output=True)
        os.rmdir(path)


def test_hierarchy_with_children_keeps_its_links_after_umount(stat: kernel_a1.KernelMirror,
                                                              mirror_fs: str) -> None:
    """A hierarchy with a child lives on after its umount (cgroup v1), and so do its link and files;
    a new mount of the same options gets the same hierarchy, with the entries as they were."""
    options = "none,name=a1keep"
    path = tempfile.mkdtemp(prefix="bpffs-sync-v1-keep-")
    top = os.path.join(mirror_fs, "cgroup-v1", "name=a1keep")
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True)
        os.mkdir(os.path.join(path, "child"))
        fd = stat.attach(path)
        try:
            subprocess.run(["umount", path], check=True)
            assert link_desc(fd).cgroup_id != 0
            assert v1_files(top) == {".", "child"}
            subprocess.run(["timeout", "60", "mount", "-t", "cgroup", "-o", options, "none", path], check=True)
            os.rmdir(os.path.join(path, "child"))
            assert v1_files(top) == {"."}
        finally:
            libbpf.link_detach(fd)
            os.close(fd)
    finally:
        subprocess.run(["umount", path], check=False, capture_output=True)
        os.rmdir(path)


def test_mirror_enable_and_disable_carry_v1_links(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                  named_v1: str, link_fds: list[int]) -> None:
    """The instance's remount with nocgroup_mirror removes cgroup-v1/ with the rest and detaches
    nothing; the next instance mounted with cgroup_mirror gets the v1 link's files again."""
    os.mkdir(os.path.join(named_v1, "j"))
    fd = stat.attach(named_v1)
    link_fds.append(fd)
    top = os.path.join(mirror_fs, "cgroup-v1", "name=a1rename")
    assert v1_files(top) == {".", "j"}
    subprocess.run(["mount", "-o", "remount,nocgroup_mirror", mirror_fs], check=True)
    assert not os.path.exists(os.path.join(mirror_fs, "cgroup-v1"))
    assert link_desc(fd).cgroup_id != 0
    again = mount_bpffs("cgroup_mirror")
    try:
        assert v1_files(os.path.join(again, "cgroup-v1", "name=a1rename")) == {".", "j"}
    finally:
        umount_bpffs(again)


MEM_HOG = """
import mmap, os, signal, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
buf = mmap.mmap(-1, 16 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, len(buf), 4096):
    buf[off] = 1
sys.stdout.write("ready\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.fixture
def memory_v1() -> Iterator[str]:
    """The memory controller on a v1 hierarchy of its own: it must not be enabled anywhere on v2
    (another test's +memory at the root is taken back first)."""
    with open("/sys/fs/cgroup/cgroup.subtree_control", "w", encoding="ascii") as f:
        try:
            f.write("-memory")
        except OSError as err:
            pytest.skip(f"memory stays enabled on the v2 root: {err}")
    with contextlib.ExitStack() as stack:
        try:  # only the mount may skip the test, not its teardown
            path = stack.enter_context(mounted_v1_hierarchy("memory"))
        except OSError as err:  # v1_scratch's mount failure
            pytest.skip(f"cannot mount the v1 memory hierarchy: {err}")
        yield path


def test_memcg_histo_in_the_v1_memory_tree(mirror_fs: str, memory_v1: str, loaded_stats: LoadedStats,
                                           link_fds: list[int]) -> None:
    """memcg_histo as a cgroup/stat program on the kernel's v1 memory tree: usage_bytes equals the
    v1 cgroup's memory.usage_in_bytes while its one task is stopped."""
    reader = loaded_stats.get(kernel_a1.KernelMirror, Layout(mirror_fs, "/sys/fs/cgroup"), lookup("memcg_histo"))
    job = os.path.join(memory_v1, "job")
    os.mkdir(job)
    link_fds.append(reader.attach(memory_v1))
    hog = subprocess.Popen([sys.executable, "-c", MEM_HOG, job], stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline() == "ready\n"
        os.waitid(os.P_PID, hog.pid, os.WSTOPPED)
        path = os.path.join(mirror_fs, "cgroup-v1", "memory", "job", "memcg_histo")
        seen = []
        for _ in range(20):
            with open(path, encoding="ascii") as f:
                lines = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
            with open(os.path.join(job, "memory.usage_in_bytes"), encoding="ascii") as f:
                usage = int(f.read())
            seen.append((int(lines["usage_bytes"]), usage))
            if seen[-1][0] == usage:
                break
            time.sleep(0.2)
        assert seen[-1][0] == seen[-1][1] >= 16 << 20, seen
    finally:
        hog.send_signal(signal.SIGKILL)
        hog.wait()


@pytest.mark.usefixtures("window")
@pytest.mark.parametrize("win", [WIN_INDEX, WIN_POPULATE], ids=["index", "populate"])
def test_hierarchy_ending_during_link_create(win: int, mirror_fs: str, link_fds: list[int]) -> None:
    """Link create on the root of a lazily unmounted childless hierarchy sleeps in a window while
    the last fd of that hierarchy goes: cgroup_kill_sb() kills the root and
    bpf_cgroup_stat_kill_root() waits on cgstat_walk_mutex, which the create holds.
    - Window 1 (INDEX: indexed, root not checked): the create sees the refcount dying and fails
      with ENOENT (no link on a killed root, which would keep the hierarchy dying).
    - Window 2 (POPULATE: cgstat_mutex dropped, walk not begun): the create walks the dying root
      and returns a link, which kill_root then detaches (cgroup_id 0, no file). Before review 5's
      fix, kill_root took no walk mutex and put the link's root here, and the walk then used the
      freed root (a use-after-free KASAN reports on the debug image).
    Either way the same options mount again at once. (Window 2 is on the walk, which runs only
    while an instance holds the mirror: mirror_fs.)"""
    options = "none,name=a1dying"
    path = tempfile.mkdtemp(prefix="bpffs-sync-v1-dying-")
    prog_fd = load("cgstat_dying")
    mounted = False
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True)
        mounted = True
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        subprocess.run(["umount", "-l", path], check=True)
        mounted = False
        create = create_in_window(win, prog_fd, cgroup_fd=dir_fd)
        # the last reference to the hierarchy's superblock: its kill_sb runs in this closer's
        # task work and waits for the create, so not on the test's own thread
        closer = threading.Thread(target=os.close, args=(dir_fd,), daemon=True)
        closer.start()
        create.join(HIT_TIMEOUT)
        closer.join(HIT_TIMEOUT)
        assert not create.is_alive() and not closer.is_alive()
        if create.fd is not None:
            link_fds.append(create.fd)
        if win == WIN_INDEX:
            assert create.error is not None and create.error.errno == errno.ENOENT, (create.fd, create.error)
        else:
            assert create.fd is not None, create.error
            desc = link_desc(create.fd)
            assert (desc.cgroup_id, desc.nr_files) == (0, 0)
        mount_again(options, path)
        mounted = True
    finally:
        os.close(prog_fd)
        if mounted:
            subprocess.run(["umount", path], check=False, capture_output=True)
        os.rmdir(path)


def test_detached_link_does_not_keep_its_v1_hierarchy(stat: kernel_a1.KernelMirror) -> None:
    """A link holds its root only while attached (review 5, finding 4): detached by
    BPF_LINK_DETACH and kept by its fd, it must not keep a childless hierarchy from ending at its
    unmount, so a new mount of the same options succeeds while the fd is still open."""
    options = "none,name=a1detached"
    path = tempfile.mkdtemp(prefix="bpffs-sync-v1-detached-")
    mounted = False
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True)
        mounted = True
        fd = stat.attach(path)
        try:
            libbpf.link_detach(fd)
            subprocess.run(["umount", path], check=True)
            mounted = False
            mount_again(options, path)
            mounted = True
        finally:
            os.close(fd)
    finally:
        if mounted:
            subprocess.run(["umount", path], check=False, capture_output=True)
        os.rmdir(path)
