"""The series' behaviour, one test per behaviour, against the running patched kernel.

Every check reads ground truth from cgroupfs and the bpffs mirror the kernel made; nothing is
mocked. Run inside the guest by `make kernel-test` (kernel-approach1/scripts/test.sh).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import rawbpf
from conftest import CGROUP2, link_desc

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.errors import LibbpfError
from bpffs_sync.histogram import parse_stat
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

NAME = "hist_oncpu"


def mirror_of(mirror_fs: str, cgroup_dir: str) -> str:
    """The kernel's mirror directory of a cgroup v2 directory."""
    rel = os.path.relpath(cgroup_dir, CGROUP2)
    return os.path.join(mirror_fs, "cgroup") if rel == "." else os.path.join(mirror_fs, "cgroup", rel)


def stat_files(mirror_fs: str, name: str = NAME) -> set[str]:
    """Every file called name under the mirror, as cgroup paths relative to the mirror root."""
    top = os.path.join(mirror_fs, "cgroup")
    found = set()
    for dirpath, _dirs, files in os.walk(top):
        if name in files:
            found.add(os.path.relpath(dirpath, top))
    return found


def cgroups_under(root: str) -> set[str]:
    return {os.path.relpath(d, CGROUP2) for d, _, _ in os.walk(root)}


def make_tree(cg: str, *rels: str) -> None:
    for rel in rels:
        os.makedirs(os.path.join(cg, rel))


def burn(cgroup_dir: str, seconds: float) -> None:
    """Run a CPU-bound child in cgroup_dir for `seconds` of wall time."""
    code = (
        "import os,sys,time\n"
        f"open(os.path.join({cgroup_dir!r}, 'cgroup.procs'), 'w').write(str(os.getpid()))\n"
        f"end = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end: pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- files where, and only where, they belong ----------------------------------------------------


def test_subtree_link_files_exactly_below_root(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                               link_fds: list[int]) -> None:
    """A link at a subtree gives every cgroup there a file, and no cgroup outside it one."""
    make_tree(cg, "a/b/c", "a/d", "system.slice/foo.service")
    link_fds.append(stat.attach(cg))
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert not os.path.exists(os.path.join(mirror_fs, "cgroup", NAME))  # the root cgroup has none
    assert link_desc(link_fds[0]).nr_files == len(cgroups_under(cg))


def test_root_link_covers_every_cgroup(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                       link_fds: list[int]) -> None:
    """A link at the v2 root mirrors the whole hierarchy, root included, and verify agrees."""
    make_tree(cg, "x/y", "init.scope")
    link_fds.append(stat.attach(CGROUP2, "all_oncpu"))
    assert stat_files(mirror_fs, "all_oncpu") == cgroups_under(CGROUP2)
    report = kernel_a1.verify(mirror_fs, CGROUP2)
    assert report.in_sync, report.to_text()
    assert report.files == len(cgroups_under(CGROUP2))


def test_cat_prints_that_cgroups_data(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                      link_fds: list[int]) -> None:
    """Reading a cgroup's file runs the program for that cgroup: its id, its CPU time."""
    make_tree(cg, "busy", "idle")
    link_fds.append(stat.attach(cg))
    burn(os.path.join(cg, "busy"), 0.3)
    busy = parse_stat(read(os.path.join(mirror_of(mirror_fs, cg), "busy", NAME)))
    idle = parse_stat(read(os.path.join(mirror_of(mirror_fs, cg), "idle", NAME)))
    assert busy.summary["cgroup_id"] == os.stat(os.path.join(cg, "busy")).st_ino
    assert idle.summary["cgroup_id"] == os.stat(os.path.join(cg, "idle")).st_ino
    assert busy.summary["total_ns"] > 200_000_000
    assert idle.summary.get("total_ns", 0) == 0


# --- the tree follows mkdir and rmdir synchronously ----------------------------------------------


ODD_NAMES = ["system.slice", "foo.service", "with space", "ünïcödé", "x" * 255, ".hidden", "a..b"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=lambda n: n[:16])
def test_mkdir_rmdir_reflected_before_return(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                             link_fds: list[int], name: str) -> None:
    """The file exists when mkdir returns and is gone when rmdir returns, dotted names included."""
    link_fds.append(stat.attach(cg))
    path = os.path.join(cg, name)
    mirrored = os.path.join(mirror_of(mirror_fs, cg), name)
    os.mkdir(path)
    assert os.path.isfile(os.path.join(mirrored, NAME))
    os.mkdir(os.path.join(path, "child.scope"))
    assert os.path.isfile(os.path.join(mirrored, "child.scope", NAME))
    os.rmdir(os.path.join(path, "child.scope"))
    os.rmdir(path)
    assert not os.path.lexists(mirrored)
    assert link_desc(link_fds[0]).nr_files == 1


def test_deep_nesting(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> None:
    """Depth 12 below the link's root, made after the link, all mirrored; removal prunes all."""
    link_fds.append(stat.attach(cg))
    rel = os.path.join(*[f"l{i}.slice" for i in range(12)])
    os.makedirs(os.path.join(cg, rel))
    assert os.path.isfile(os.path.join(mirror_of(mirror_fs, cg), rel, NAME))
    assert link_desc(link_fds[0]).nr_files == 13
    parts = rel.split("/")
    for i in range(len(parts), 0, -1):
        os.rmdir(os.path.join(cg, *parts[:i]))
    assert os.listdir(mirror_of(mirror_fs, cg)) == [NAME]


def test_delegated_unprivileged_mkdir_is_mirrored(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                                  link_fds: list[int]) -> None:
    """A mkdir by an unprivileged owner of a delegated subtree is mirrored all the same."""
    make_tree(cg, "user")
    delegated = os.path.join(cg, "user")
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(delegated, entry), 65534, 65534)
    os.chmod(mirror_fs, 0o700)  # like systemd's /sys/fs/bpf: the user cannot even look
    link_fds.append(stat.attach(cg))
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "mkdir",
                    os.path.join(delegated, "job.scope")], check=True)
    made = os.path.join(mirror_of(mirror_fs, cg), "user", "job.scope", NAME)
    assert os.path.isfile(made)
    assert os.stat(made).st_uid == 0  # owned by the instance, not by the user


# --- what users may not do -----------------------------------------------------------------------


def test_mirror_is_read_only_for_users(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                       link_fds: list[int]) -> None:
    """Root cannot unlink, rename, chmod or create inside the mirror: it is the kernel's."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    mdir = os.path.join(mirror_of(mirror_fs, cg), "a")
    ops: list[Callable[[], object]] = [

        lambda: os.unlink(os.path.join(mdir, NAME)),
        lambda: os.rename(mdir, mdir + ".moved"),
        lambda: os.rmdir(os.path.join(mirror_fs, "cgroup")),
        lambda: os.rename(os.path.join(mirror_fs, "cgroup"), os.path.join(mirror_fs, "elsewhere")),
        lambda: os.mkdir(os.path.join(mdir, "extra")),
        lambda: os.chmod(os.path.join(mdir, NAME), 0o666),
        lambda: os.close(os.open(os.path.join(mdir, "new"), os.O_WRONLY | os.O_CREAT)),
        lambda: os.close(os.open(os.path.join(mdir, NAME), os.O_WRONLY)),
    ]
    for op in ops:
        with pytest.raises(OSError) as exc:
            op()
        assert exc.value.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
    fd = libbpf.obj_get(os.path.join(mirror_fs, "bpffs-sync", NAME, "oncpu_stats"))
    try:
        with pytest.raises(LibbpfError):  # no pins inside the mirror
            libbpf.obj_pin(fd, os.path.join(mdir, "pinned"))
    finally:
        os.close(fd)


def test_name_collision_skips_the_subtree(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                          link_fds: list[int]) -> None:
    """A cgroup named like the stat file: mkdir works, the file wins, the subtree is not mirrored."""
    link_fds.append(stat.attach(cg))
    os.makedirs(os.path.join(cg, NAME, "below"))
    assert os.path.isfile(os.path.join(mirror_of(mirror_fs, cg), NAME))
    assert link_desc(link_fds[0]).nr_errors == 2  # the cgroup and its child
    report = kernel_a1.verify(mirror_fs, CGROUP2)
    assert report.in_sync, report.to_text()
    assert report.conflicts == [os.path.relpath(os.path.join(cg, NAME), CGROUP2)]


@pytest.mark.parametrize("dir_first", [True, False], ids=["directory-first", "file-first"])
def test_first_entry_made_wins(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int],
                               dir_first: bool) -> None:
    """Second v3 review, finding 6: link "l1" at a/x needs the directory a/x in the mirror, link "x" at
    a needs the file a/x; whichever entry is made first wins, both link creates succeed. Directory
    first: l1 keeps its file, x has none at a (one error) but one in a/x's directory. File first:
    a/x is not mirrored, so l1 is left with no file at all (nr_files 0, one error)."""
    make_tree(cg, "a/x")
    a = os.path.join(cg, "a")
    ax = os.path.join(a, "x")
    if dir_first:
        link_fds.append(l1 := stat.attach(ax, "l1"))
        link_fds.append(lx := stat.attach(a, "x"))
    else:
        link_fds.append(lx := stat.attach(a, "x"))
        link_fds.append(l1 := stat.attach(ax, "l1"))
    entry = os.path.join(mirror_of(mirror_fs, a), "x")
    d1, dx = link_desc(l1), link_desc(lx)
    if dir_first:
        assert os.path.isdir(entry)
        assert sorted(os.listdir(entry)) == ["l1", "x"]  # l1's file, and x's for the cgroup a/x
        assert ((d1.nr_files, d1.nr_errors), (dx.nr_files, dx.nr_errors)) == ((1, 0), (1, 1))
    else:
        assert os.path.isfile(entry)  # x's file for a
        assert ((d1.nr_files, d1.nr_errors), (dx.nr_files, dx.nr_errors)) == ((0, 1), (1, 1))



@pytest.fixture
def pin_path(mirror_fs: str) -> Iterator[str]:
    """A pin path in the test's bpffs instance, unlinked afterwards."""
    path = os.path.join(mirror_fs, "cgstat_test_pin")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

# --- link lifetime -------------------------------------------------------------------------------


def test_a_pin_keeps_the_link_and_files_after_its_fd_closes(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                            cg: str, pin_path: str) -> None:
    """A pinned link whose fd closes keeps its files; new cgroups still get files; detach removes all."""
    make_tree(cg, "a/b")
    fd = stat.attach(cg)
    link_id = link_desc(fd).link_id
    libbpf.obj_pin(fd, pin_path)
    os.close(fd)
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert any(d.link_id == link_id for d in libbpf.cgroup_stat_links())
    make_tree(cg, "a/c")
    assert os.path.isfile(os.path.join(mirror_of(mirror_fs, cg), "a", "c", NAME))
    assert parse_stat(read(os.path.join(mirror_of(mirror_fs, cg), "a", NAME))).summary["cgroup_id"] > 0

    assert kernel_a1.detach_all([NAME]) == 1
    assert stat_files(mirror_fs) == set()
    assert os.listdir(os.path.join(mirror_fs, "cgroup")) == []  # every directory it made is gone
    assert any(d.link_id == link_id for d in libbpf.cgroup_stat_links())  # detached, the pin keeps it
    os.unlink(pin_path)
    deadline = time.monotonic() + 30
    while any(d.link_id == link_id for d in libbpf.cgroup_stat_links()):  # freed by a workqueue
        assert time.monotonic() < deadline, "link still alive after its files were removed"
        time.sleep(0.01)


def test_detach_leaves_other_links_alone(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                         link_fds: list[int]) -> None:
    """Two links on nested roots: detaching one keeps the other's files and shared directories."""
    make_tree(cg, "a/b")
    link_fds.append(stat.attach(cg, "outer"))
    link_fds.append(stat.attach(os.path.join(cg, "a", "b"), "inner"))
    libbpf.link_detach(link_fds[0])
    assert stat_files(mirror_fs, "outer") == set()
    assert stat_files(mirror_fs, "inner") == {os.path.relpath(os.path.join(cg, "a", "b"), CGROUP2)}
    assert link_desc(link_fds[1]).nr_files == 1
    assert link_desc(link_fds[0]).nr_files == 0


def test_removing_the_root_cgroup_detaches(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                           link_fds: list[int]) -> None:
    """rmdir of a link's root removes its last file and the directories above that it needed."""
    make_tree(cg, "r/s")
    link_fds.append(stat.attach(os.path.join(cg, "r")))
    os.rmdir(os.path.join(cg, "r", "s"))
    os.rmdir(os.path.join(cg, "r"))
    assert link_desc(link_fds[0]).nr_files == 0
    assert os.listdir(os.path.join(mirror_fs, "cgroup")) == []
    make_tree(cg, "r")  # a new cgroup of that name is not the link's root
    assert stat_files(mirror_fs) == set()


def test_open_file_survives_rmdir_and_detach(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                             link_fds: list[int]) -> None:
    """An open file keeps its program: after detach it still reads; after rmdir it reads ENODEV."""
    make_tree(cg, "a", "b")
    link_fds.append(stat.attach(cg))
    fa = os.open(os.path.join(mirror_of(mirror_fs, cg), "a", NAME), os.O_RDONLY)
    fb = os.open(os.path.join(mirror_of(mirror_fs, cg), "b", NAME), os.O_RDONLY)
    try:
        libbpf.link_detach(link_fds[0])
        assert b"cgroup_id:" in os.read(fa, 32768)
        os.rmdir(os.path.join(cg, "b"))
        with pytest.raises(OSError) as exc:
            os.read(fb, 32768)
        assert exc.value.errno == errno.ENODEV
    finally:
        os.close(fa)
        os.close(fb)


# --- the mirror instance -------------------------------------------------------------------------


def _ask_for_the_mirror(fs_fd: int, apply: Callable[[int], None]) -> tuple[int, str]:
    """Set cgroup_mirror on an fs_context and apply it (create or reconfigure): (errno, the
    fs_context log) when refused, (0, "") when taken. Closes fs_fd."""
    try:
        rawbpf.fsconfig_flag(fs_fd, "cgroup_mirror")
        try:
            apply(fs_fd)
        except OSError as err:
            return err.errno or 0, rawbpf.fs_messages(fs_fd)
        return 0, ""
    finally:
        os.close(fs_fd)


def refused_mirror_mount() -> tuple[int, str]:
    """A new bpffs with cgroup_mirror through fsopen/fsconfig: (errno of FSCONFIG_CMD_CREATE, the
    fs_context log); (0, "") if it was created (then dropped at once, taking the mirror with it)."""
    return _ask_for_the_mirror(rawbpf.fsopen("bpf"), rawbpf.fsconfig_create)


def refused_mirror_remount(path: str) -> tuple[int, str]:
    """remount,cgroup_mirror of the bpffs at path through fspick: (errno, fs_context log), (0, "")."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs_fd = rawbpf.fspick(fd)
    finally:
        os.close(fd)
    return _ask_for_the_mirror(fs_fd, rawbpf.fsconfig_reconfigure)


HELD = "another bpffs instance holds the mirror"


def test_a_second_instance_is_refused(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                      link_fds: list[int]) -> None:
    """While one bpffs instance holds the mirror, a new instance with cgroup_mirror fails with EBUSY
    and says why, and so does remounting a plain one with it (v2: the second took the mirror, the
    first lost its files); the first keeps its files and option; plain instances are unaffected."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    err, log = refused_mirror_mount()
    assert (err, HELD in log) == (errno.EBUSY, True), log
    plain = mount_bpffs()
    try:
        err, log = refused_mirror_remount(plain)
        assert (err, HELD in log) == (errno.EBUSY, True), log
        assert os.listdir(plain) == []
    finally:
        umount_bpffs(plain)
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert "cgroup_mirror" in mount_options(mirror_fs)
    assert link_desc(link_fds[0]).nr_files == 2


def mount_options(path: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[4] == os.path.realpath(path):
                return line.split(" - ")[1].split()[2].split(",")
    raise AssertionError(f"{path} is not mounted")


def test_mirror_enabled_later_shows_existing_links(cg: str, link_fds: list[int]) -> None:
    """A link made with no mirror instance gets its files when one is mounted, and loses them at umount."""
    from bpffs_sync.paths import Layout
    from bpffs_sync.programs import lookup

    private = mount_bpffs()
    try:
        spec = lookup("hist_oncpu")
        with kernel_a1.KernelMirror(Layout(private, CGROUP2), spec) as km:
            make_tree(cg, "a")
            link_fds.append(km.attach(cg))
        assert link_desc(link_fds[0]).nr_files == 0
        subprocess.run(["mount", "-o", "remount,cgroup_mirror", private], check=True)
        assert kernel_a1.mirror_enabled(private)
        assert stat_files(private) == cgroups_under(cg)
        assert link_desc(link_fds[0]).nr_files == 2
    finally:
        umount_bpffs(private)
    assert link_desc(link_fds[0]).nr_files == 0  # the files went with the instance
    make_tree(cg, "b")  # and mkdir does not bring them back
    assert link_desc(link_fds[0]).nr_files == 0
    kernel_a1.detach_all()


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", "x" * 256])
def test_bad_names_refused(stat: kernel_a1.KernelMirror, cg: str, name: str) -> None:
    """A file name must be one path component of 1..255 bytes."""
    with pytest.raises(LibbpfError) as exc:
        stat.attach(cg, name)
    assert exc.value.errno == errno.EINVAL


def test_duplicate_name_and_bad_roots_refused(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                              link_fds: list[int]) -> None:
    """Same name twice in a hierarchy: EEXIST, nothing changed; a non-cgroup fd: EBADF."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    before = stat_files(mirror_fs)
    with pytest.raises(LibbpfError) as exc:
        stat.attach(os.path.join(cg, "a"))
    assert exc.value.errno == errno.EEXIST
    assert stat_files(mirror_fs) == before
    with pytest.raises(LibbpfError) as exc:
        stat.attach("/tmp")
    assert exc.value.errno == errno.EBADF


# --- user space on top ---------------------------------------------------------------------------


def test_verify_cli_in_sync_with_the_kernel_tree(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                                 link_fds: list[int]) -> None:
    """`bpffs-sync verify --kernel` finds no drift in the tree the kernel made."""
    make_tree(cg, "a/b.scope", "c.slice")
    link_fds.append(stat.attach(cg))
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "bpffs-sync"), "verify", "--kernel",
                          "--bpffs", mirror_fs, "--json"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["in_sync"] and doc["files"] == len(cgroups_under(cg))
