"""Approach 2's behaviour, one test per behaviour, against the running patched kernel: files in the
cgroup directories themselves, made in the link-create walk and in cgroup_mkdir, removed on rmdir and
detach, the program swapped in place, exact link references. Ground truth is cgroupfs; nothing is
mocked. Run inside the guest by kernel-approach2/scripts/test.sh."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import threading

import pytest
from conftest import CGROUP2, FILE, NAME, cgroups_under, files_under, link_by_id, link_desc, make_tree, read

from bpffs_sync import libbpf, series
from bpffs_sync.backends import kernel_a2
from bpffs_sync.errors import LibbpfError
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import wait_until

# --- where the files are -------------------------------------------------------------------------


def test_files_in_every_cgroup_of_the_subtree_only(stat: kernel_a2.CgroupfsStat, cg: str,
                                                  link_fds: list[int]) -> None:
    """A link at a subtree puts bpf.stat.<name> in its root and every descendant, nowhere else."""
    make_tree(cg, "a/b/c", "a/d", "system.slice/foo.service")
    link_fds.append(stat.attach(cg))
    assert files_under(cg) == cgroups_under(cg)
    assert not os.path.exists(os.path.join(os.path.dirname(cg), FILE))
    assert link_desc(link_fds[0]).nr_files == len(cgroups_under(cg))


def test_root_link_covers_every_cgroup(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """A link at the v2 root puts a file in every cgroup of the hierarchy."""
    make_tree(cg, "x/y")
    link_fds.append(stat.attach(CGROUP2))
    everywhere = cgroups_under(CGROUP2)
    assert files_under(CGROUP2) == everywhere
    assert link_desc(link_fds[0]).nr_files == len(everywhere)


def test_read_names_its_own_cgroup(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """cat bpf.stat.hist_oncpu prints the id of the cgroup whose directory holds it."""
    make_tree(cg, "a/b")
    link_fds.append(stat.attach(cg))
    for rel in ("", "a", "a/b"):
        d = os.path.join(cg, rel)
        assert read(os.path.join(d, FILE)).splitlines()[0] == f"cgroup_id: {os.stat(d).st_ino}"


def test_name_from_link_create(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """link_create.cgroup_stat.name names the file bpf.stat.<name>; the info reports that file name."""
    link_fds.append(stat.attach(cg, "oncpu.v2"))
    assert os.path.isfile(os.path.join(cg, "bpf.stat.oncpu.v2"))
    assert link_desc(link_fds[0]).name == "bpf.stat.oncpu.v2"


def test_mode_and_owner_like_interface_files(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """Files are 0444 regular files owned like cpu.stat: by whoever's syscall made them (root here)."""
    link_fds.append(stat.attach(cg))
    st = os.stat(os.path.join(cg, FILE))
    ref = os.stat(os.path.join(cg, "cgroup.stat"))
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o444, ref.st_uid, ref.st_gid)


# --- mkdir and rmdir -----------------------------------------------------------------------------


def test_file_exists_when_mkdir_returns(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """mkdir(2) returns with the file in place, and no observer ever sees the directory without it."""
    link_fds.append(stat.attach(cg))
    seen_without: list[str] = []
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            for name in os.listdir(cg):
                d = os.path.join(cg, name)
                if name.startswith("n") and os.path.isdir(d):
                    try:
                        entries = os.listdir(d)
                    except FileNotFoundError:
                        continue
                    if FILE not in entries:
                        seen_without.append(name)

    t = threading.Thread(target=observe)
    t.start()
    try:
        for i in range(200):
            d = os.path.join(cg, f"n{i}")
            os.mkdir(d)
            assert os.path.isfile(os.path.join(d, FILE)), d
    finally:
        stop.set()
        t.join()
    assert seen_without == []
    assert link_desc(link_fds[0]).nr_files == 201


def test_rmdir_removes_the_file_and_its_reference(stat: kernel_a2.CgroupfsStat, cg: str,
                                                  link_fds: list[int]) -> None:
    """rmdir of a cgroup holding a file succeeds and drops nr_files by one."""
    make_tree(cg, "a/b")
    link_fds.append(stat.attach(cg))
    os.rmdir(os.path.join(cg, "a", "b"))
    assert link_desc(link_fds[0]).nr_files == 2
    os.rmdir(os.path.join(cg, "a"))
    assert link_desc(link_fds[0]).nr_files == 1


def test_delegated_unprivileged_mkdir(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """A delegated user's mkdir gets the file, owned by that user like the cgroup's other interface
    files (mode 0444), and the user can read it."""
    make_tree(cg, "user")
    delegated = os.path.join(cg, "user")
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(delegated, entry), 65534, 65534)
    link_fds.append(stat.attach(cg))
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    job = os.path.join(delegated, "job.scope")
    subprocess.run([*as_user, "mkdir", job], check=True)
    st = os.stat(os.path.join(job, FILE))
    procs = os.stat(os.path.join(job, "cgroup.procs"))
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o444, 65534, 65534)
    assert (procs.st_uid, procs.st_gid) == (65534, 65534)
    out = subprocess.run([*as_user, "cat", os.path.join(job, FILE)], check=True, capture_output=True, text=True)
    assert out.stdout.splitlines()[0] == f"cgroup_id: {os.stat(job).st_ino}"
    subprocess.run([*as_user, "rmdir", job], check=True)
    assert link_desc(link_fds[0]).nr_files == 2


def test_users_cannot_remove_or_write_the_file(stat: kernel_a2.CgroupfsStat, cg: str,
                                               link_fds: list[int]) -> None:
    """Nobody unlinks, renames or writes a bpf.stat file: cgroupfs has no unlink, the file no ->write
    (EINVAL, as for cgroup.stat)."""
    link_fds.append(stat.attach(cg))
    path = os.path.join(cg, FILE)
    with pytest.raises(OSError) as unlink:
        os.unlink(path)
    with pytest.raises(OSError) as rename:
        os.rename(path, os.path.join(cg, "bpf.stat.other"))
    fd = os.open(path, os.O_WRONLY)  # root may open it, as any cgroupfs read-only file (cgroup.stat)
    try:
        with pytest.raises(OSError) as write:
            os.write(fd, b"x")
    finally:
        os.close(fd)
    assert unlink.value.errno == errno.EPERM
    assert rename.value.errno in (errno.EPERM, errno.EINVAL, errno.ENOTDIR)
    assert write.value.errno == errno.EINVAL
    assert os.path.isfile(path)


# --- name collisions -----------------------------------------------------------------------------


def test_mkdir_named_like_the_file_is_eexist_like_interface_files(stat: kernel_a2.CgroupfsStat, cg: str,
                                                                  link_fds: list[int]) -> None:
    """A bpf.stat file is an interface file: mkdir of its name fails with EEXIST at the VFS (before
    cgroupfs sees it), exactly as mkdir of cgroup.procs does; the file and the link are untouched."""
    link_fds.append(stat.attach(cg))
    errnos = []
    for name in (FILE, "cgroup.procs"):
        with pytest.raises(OSError) as exc:
            os.mkdir(os.path.join(cg, name))
        errnos.append(exc.value.errno)
    assert errnos == [errno.EEXIST, errno.EEXIST]
    assert os.path.isfile(os.path.join(cg, FILE))
    desc = link_desc(link_fds[0])
    assert (desc.nr_files, desc.nr_errors) == (1, 0)


def test_no_cgroup_can_take_a_bpf_stat_name(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """The prefix is reserved: mkdir of any bpf.stat.* name is EINVAL, before a link exists (so no
    cgroup can be there to shadow a link's file) and after (for names no link has yet)."""
    errnos = []
    for name in (FILE, "bpf.stat.future", "bpf.stat."):
        with pytest.raises(OSError) as exc:
            os.mkdir(os.path.join(cg, name))
        errnos.append(exc.value.errno)
    link_fds.append(stat.attach(cg))
    with pytest.raises(OSError) as after:
        os.mkdir(os.path.join(cg, "bpf.stat.future"))
    assert errnos == [errno.EINVAL] * 3
    assert after.value.errno == errno.EINVAL
    os.mkdir(os.path.join(cg, "bpf.statistics"))  # only the prefix with its dot
    os.rmdir(os.path.join(cg, "bpf.statistics"))
    desc = link_desc(link_fds[0])
    assert (desc.nr_files, desc.nr_errors) == (1, 0)


def test_delegated_user_cannot_blind_the_monitor(stat: kernel_a2.CgroupfsStat, cg: str,
                                                 link_fds: list[int]) -> None:
    """A delegated user owning a subtree can neither shadow, remove nor hide the admin's file: its
    mkdir of the file's name is EEXIST, of another bpf.stat name EINVAL, its unlink EPERM; cgroups it
    makes while the link is being created all get the file (nr_errors 0); a chmod of a file it owns
    leaves it readable by root."""
    make_tree(cg, "user")
    delegated = os.path.join(cg, "user")
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(delegated, entry), 65534, 65534)
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # the user's cgroups come and go while the link is created
    churn = subprocess.Popen([*as_user, "/usr/bin/python3", "-c",
                              "import os, sys\nfor i in range(400): os.mkdir(f'{sys.argv[1]}/j{i}')", delegated])
    link_fds.append(stat.attach(cg))
    assert churn.wait() == 0
    job = os.path.join(delegated, "j0")
    attempts = {
        "mkdir file name": [*as_user, "mkdir", os.path.join(job, FILE)],
        "mkdir other bpf.stat": [*as_user, "mkdir", os.path.join(job, "bpf.stat.mine")],
        "unlink": [*as_user, "rm", "-f", os.path.join(job, FILE)],
        "mv": [*as_user, "mv", os.path.join(job, FILE), os.path.join(job, "x")],
    }
    failed = {what: subprocess.run(cmd, check=False, capture_output=True, text=True).returncode != 0
              for what, cmd in attempts.items()}
    subprocess.run([*as_user, "chmod", "000", os.path.join(job, FILE)], check=True)
    desc = link_desc(link_fds[0])
    assert failed == dict.fromkeys(attempts, True)
    assert files_under(cg) == cgroups_under(cg)
    assert (desc.nr_files, desc.nr_errors) == (len(cgroups_under(cg)), 0)
    assert read(os.path.join(job, FILE)).splitlines()[0] == f"cgroup_id: {os.stat(job).st_ino}"


def test_duplicate_name_on_a_hierarchy_refused(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """A second link making the same file name on the same hierarchy is EEXIST."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    with pytest.raises(LibbpfError) as exc:
        link_fds.append(stat.attach(os.path.join(cg, "a")))
    assert exc.value.errno == errno.EEXIST


@pytest.mark.parametrize("name", ["", "a/b", "x" * 247, "nul\0in"])
def test_bad_names_refused(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int], name: str) -> None:
    """Empty names, slashes, names too long with the prefix, and NULs inside are EINVAL."""
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    link_fds.append(cg_fd)
    raw_len = len(name.encode())
    with pytest.raises(LibbpfError) as exc:
        if name == "":
            _create_with_len(stat.stat.reader.fd(), cg_fd, b"", 0)
        else:
            _create_with_len(stat.stat.reader.fd(), cg_fd, name.encode(), raw_len)
    assert exc.value.errno == errno.EINVAL
    assert not [n for n in os.listdir(cg) if n.startswith("bpf.stat.")]


def _create_with_len(prog_fd: int, cg_fd: int, raw: bytes, length: int) -> int:
    """BPF_LINK_CREATE with a name buffer and a length that need not agree (raw bpf(2))."""
    buf = ctypes.create_string_buffer(raw, len(raw) + 1)
    uapi = series.uapi()
    attr = libbpf.LinkCreateCgroupStat(prog_fd=prog_fd, cgroup_root=cg_fd, attach_type=uapi.attach_type,
                                       name=ctypes.addressof(buf), name_len=length,
                                       name_flags=uapi.cgroupfs_flag or 0)
    return libbpf.sys_bpf(libbpf.BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), "BPF_LINK_CREATE", "raw")


def test_not_a_cgroup_refused(stat: kernel_a2.CgroupfsStat, link_fds: list[int]) -> None:
    """A cgroup_root fd that is not a cgroup directory is refused."""
    with pytest.raises(LibbpfError) as exc:
        link_fds.append(stat.attach("/tmp"))
    assert exc.value.errno in (errno.EBADF, errno.EINVAL)


def test_unprivileged_link_create_refused(stat: kernel_a2.CgroupfsStat, cg: str) -> None:
    """Link create needs CAP_SYS_ADMIN: a child that dropped it gets EPERM (the program fd is inherited)."""
    prog_fd = stat.stat.reader.fd()
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(prog_fd, True)
    os.set_inheritable(cg_fd, True)
    code = (
        "import sys\n"
        "from bpffs_sync import libbpf\n"
        "from bpffs_sync.errors import LibbpfError\n"
        "try:\n"
        f"    libbpf.link_create_cgroupfs_stat({prog_fd}, {cg_fd})\n"
        "except LibbpfError as e:\n"
        "    sys.exit(e.errno)\n"
        "sys.exit(0)\n"
    )
    try:
        res = subprocess.run(["capsh", "--drop=cap_sys_admin", "--", "-c",
                              f"exec {sys.executable} -c {_sh_quote(code)}"],
                             close_fds=False, check=False, cwd=os.getcwd())
    finally:
        os.close(cg_fd)
    assert res.returncode == errno.EPERM
    assert files_under(cg) == set()


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


# --- link lifetime -------------------------------------------------------------------------------


def test_closing_the_last_fd_detaches_and_frees_the_link(stat: kernel_a2.CgroupfsStat, cg: str) -> None:
    """A link lives by its fds and pins, as any BPF link: closing its only fd removes its files and
    frees it (v1: each file held the link, so a link on the v2 root outlived its last fd for good)."""
    make_tree(cg, "a")
    fd = stat.attach(cg)
    link_id = link_desc(fd).link_id
    assert files_under(cg) == {".", "a"}
    os.close(fd)
    # the release runs from the fd's last put, deferred, and after the link's id is freed
    # (bpf_link_free()): wait for both, the id gone alone does not say the files went
    wait_until(lambda: link_by_id(link_id) is None and not files_under(cg), 60.0, "link freed after its last fd")


def test_a_pinned_link_keeps_its_files_until_the_pin_goes(stat: kernel_a2.CgroupfsStat, pins_fs: str,
                                                          cg: str) -> None:
    """A pin keeps the link and its files after the fd closes; unlinking the pin detaches it."""
    make_tree(cg, "a")
    fd = stat.attach(cg)
    link_id = link_desc(fd).link_id
    pin = os.path.join(pins_fs, "a2-lifetime-link")
    libbpf.obj_pin(fd, pin)
    os.close(fd)
    desc = link_by_id(link_id)
    assert desc is not None and desc.nr_files == 2
    assert files_under(cg) == {".", "a"}
    os.unlink(pin)
    # the id is freed before the release removes the files (bpf_link_free()): wait for both
    wait_until(lambda: link_by_id(link_id) is None and not files_under(cg), 60.0, "link freed after its pin")


def test_detach_removes_every_file(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """BPF_LINK_DETACH removes all the link's files; the link reports cgroup_id 0 and no files."""
    make_tree(cg, "a/b", "c")
    link_fds.append(stat.attach(cg))
    libbpf.link_detach(link_fds[0])
    assert files_under(cg) == set()
    desc = link_desc(link_fds[0])
    assert (desc.cgroup_id, desc.hierarchy_id, desc.nr_files) == (0, 0, 0)
    os.mkdir(os.path.join(cg, "later"))
    assert files_under(cg) == set()


def test_rmdir_of_the_root_detaches(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """Removing the link's root cgroup detaches the link (cgroup_id 0), as for cgroup links."""
    make_tree(cg, "r")
    link_fds.append(stat.attach(os.path.join(cg, "r")))
    os.rmdir(os.path.join(cg, "r"))
    assert link_desc(link_fds[0]).cgroup_id == 0
    os.mkdir(os.path.join(cg, "r"))
    assert files_under(cg) == set()


def test_nested_links_are_independent(stat: kernel_a2.CgroupfsStat, pins_fs: str, cg: str,
                                      link_fds: list[int]) -> None:
    """Two links of different names nest; detaching one leaves the other's files."""
    make_tree(cg, "a/b")
    link_fds.append(stat.attach(cg, "outer"))
    link_fds.append(stat.attach(os.path.join(cg, "a"), "inner"))
    os.mkdir(os.path.join(cg, "a", "c"))
    assert files_under(cg, "bpf.stat.inner") == {"a", "a/b", "a/c"}
    libbpf.link_detach(link_fds[1])
    assert files_under(cg, "bpf.stat.inner") == set()
    assert files_under(cg, "bpf.stat.outer") == cgroups_under(cg)


def test_update_swaps_the_program_in_place(stat: kernel_a2.CgroupfsStat, pins_fs: str, cg: str,
                                           link_fds: list[int]) -> None:
    """BPF_LINK_UPDATE: same link, same file inodes, the new program runs on the next read, of a file
    opened before the update too."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    before = {rel: os.stat(os.path.join(cg, rel, FILE)).st_ino for rel in (".", "a")}
    held = os.open(os.path.join(cg, "a", FILE), os.O_RDONLY)
    link_fds.append(held)
    with kernel_a2.CgroupfsStat(Layout(pins_fs, CGROUP2), lookup(NAME)) as second:
        libbpf.link_update(link_fds[0], second.stat.reader.fd())
        new_prog = libbpf.prog_info(second.stat.reader.fd()).prog_id
    desc = link_desc(link_fds[0])
    assert desc.prog_id == new_prog
    assert {rel: os.stat(os.path.join(cg, rel, FILE)).st_ino for rel in (".", "a")} == before
    assert os.read(held, 65536).startswith(b"cgroup_id: ")  # opened before: reads with the new one
    assert read(os.path.join(cg, "a", FILE)).startswith("cgroup_id: ")


# --- open files across removal --------------------------------------------------------------------


def test_open_file_of_removed_cgroup_reads_enodev(stat: kernel_a2.CgroupfsStat, cg: str,
                                                  link_fds: list[int]) -> None:
    """A file held open across its cgroup's rmdir reads ENODEV; the rmdir is not held up."""
    make_tree(cg, "gone")
    link_fds.append(stat.attach(cg))
    fd = os.open(os.path.join(cg, "gone", FILE), os.O_RDONLY)
    link_fds.append(fd)
    os.rmdir(os.path.join(cg, "gone"))
    with pytest.raises(OSError) as exc:
        os.read(fd, 4096)
    assert exc.value.errno == errno.ENODEV
    assert link_desc(link_fds[0]).nr_files == 1


def test_open_file_across_detach_reads_enodev(stat: kernel_a2.CgroupfsStat, cg: str,
                                              link_fds: list[int]) -> None:
    """A file held open across BPF_LINK_DETACH reads ENODEV (kernfs drained it)."""
    link_fds.append(stat.attach(cg))
    fd = os.open(os.path.join(cg, FILE), os.O_RDONLY)
    link_fds.append(fd)
    libbpf.link_detach(link_fds[0])
    with pytest.raises(OSError) as exc:
        os.read(fd, 4096)
    assert exc.value.errno == errno.ENODEV


# --- the backend ---------------------------------------------------------------------------------


def test_backend_attach_verify_clean(pins_fs: str, cg: str) -> None:
    """attach_stats makes the link (then adopts it), verify is in sync through mkdir/rmdir, clean
    detaches and removes every file."""
    layout = Layout(pins_fs, cg)
    spec = lookup(NAME)
    first = kernel_a2.attach_stats(layout, [spec])
    again = kernel_a2.attach_stats(layout, [spec])
    assert [o.action for o in first] == ["created"] and [o.action for o in again] == ["adopted"]
    assert first[0].link_id == again[0].link_id
    make_tree(cg, "a/b")
    os.rmdir(os.path.join(cg, "a", "b"))
    report = kernel_a2.verify(cg, layout=layout)
    assert report.in_sync, report.to_text()
    assert report.files >= 2
    kernel_a2.clean(layout, [NAME])
    assert files_under(cg) == set()
    assert libbpf.cgroupfs_stat_links() == []
