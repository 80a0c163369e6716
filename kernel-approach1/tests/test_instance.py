"""The mirror instance. One instance holds the mirror until its superblock goes, it is remounted
with nocgroup_mirror, or another asks for cgroup_mirror=takeover; a plain cgroup_mirror from
another is refused with EBUSY and a message (v2 let the instance asked last take it, so any
admin's mount removed the files everyone read). An instance a lazy umount or another mount
namespace keeps alive keeps the mirror until then, or until an admin takes it over. Remount turns it off
(nocgroup_mirror) as well as on; a user's entry named cgroup fails the remount with a message and
is left alone; the option is judged by the credentials the mount was opened with."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import time

import pytest
import rawbpf
from conftest import link_desc
from test_cgroup_stat import HELD, cgroups_under, make_tree, mount_options, refused_mirror_mount, stat_files

from bpffs_sync.backends import kernel_a1
from bpffs_sync.sandbox import umount_bpffs


def remount(path: str, options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", "-o", f"remount,{options}", path], capture_output=True, text=True, check=False)


def mount_mirror() -> tuple[str | None, subprocess.CompletedProcess[str]]:
    """mount -t bpf -o cgroup_mirror on a fresh directory: (path or None, the mount's result)."""
    path = tempfile.mkdtemp(prefix="cgstat-second-")
    res = subprocess.run(["mount", "-t", "bpf", "-o", "cgroup_mirror", "bpf", path],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        os.rmdir(path)
        return None, res
    return path, res


def namespace_copy(mirror_fs: str) -> tuple[subprocess.Popen[bytes], str]:
    """A process in a private copy of this mount namespace (it keeps the mirror instance alive after
    our umount), and the path of mirror_fs as that copy sees it; the caller kills the process."""
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])
    for _ in range(500):  # until the namespace exists
        if os.readlink(f"/proc/{holder.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            break
        os.sched_yield()
    return holder, f"/proc/{holder.pid}/root{os.path.realpath(mirror_fs)}"


def test_a_lazily_unmounted_instance_keeps_the_mirror_until_its_last_file_closes(
        stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> None:
    """umount -l of the mirror instance while one of its files is open keeps its superblock, and
    the mirror, alive: a new instance is refused (EBUSY: v2 let it take the mirror, so any mount
    removed the files everyone read); once the file closes, a new instance gets it."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    stat.close()  # no fd of ours on the instance but the file below
    held = os.open(os.path.join(mirror_fs, "cgroup", os.path.relpath(cg, "/sys/fs/cgroup"), "hist_oncpu"),
                   os.O_RDONLY)
    try:
        subprocess.run(["umount", "-l", mirror_fs], check=True)
        err, log = refused_mirror_mount()
        assert (err, HELD in log) == (errno.EBUSY, True), log
        assert link_desc(link_fds[0]).nr_files == 2
    finally:
        os.close(held)
    fresh, res = mount_mirror()
    assert fresh is not None, res.stderr
    try:
        assert stat_files(fresh) == cgroups_under(cg)
    finally:
        umount_bpffs(fresh)
        subprocess.run(["mount", "-t", "bpf", "bpf", mirror_fs], check=True)  # for the fixture's umount


def test_a_mount_namespace_copy_keeps_the_mirror_until_it_goes(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                               cg: str, link_fds: list[int]) -> None:
    """A mount namespace made while the mirror was mounted keeps the instance after the admin's
    umount: a new instance is refused with EBUSY and the copy keeps its files; once the copy's
    last process exits, a new instance gets the mirror."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    stat.close()
    holder, copy_view = namespace_copy(mirror_fs)
    try:
        assert os.path.isdir(os.path.join(copy_view, "cgroup"))
        subprocess.run(["umount", mirror_fs], check=True)
        err, log = refused_mirror_mount()
        assert (err, HELD in log) == (errno.EBUSY, True), log
        assert stat_files(copy_view) == cgroups_under(cg)
    finally:
        holder.kill()
        holder.wait()
    # the namespace's mounts go after its last process, possibly from a worker: wait for that
    for _ in range(200):
        fresh, res = mount_mirror()
        if fresh is not None:
            break
        time.sleep(0.05)
    assert fresh is not None, res.stderr
    try:
        assert stat_files(fresh) == cgroups_under(cg)
    finally:
        umount_bpffs(fresh)
        subprocess.run(["mount", "-t", "bpf", "bpf", mirror_fs], check=True)


def test_remount_turns_the_mirror_off_and_on(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                             link_fds: list[int]) -> None:
    """remount,nocgroup_mirror removes cgroup/ (links stay attached); a remount naming neither
    keeps the state; remount,cgroup_mirror brings the files back."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    assert remount(mirror_fs, "nocgroup_mirror").returncode == 0
    assert not os.path.lexists(os.path.join(mirror_fs, "cgroup"))
    assert "cgroup_mirror" not in mount_options(mirror_fs)
    desc = link_desc(link_fds[0])
    assert desc.cgroup_id != 0 and desc.nr_files == 0
    assert remount(mirror_fs, "mode=0755").returncode == 0
    assert not os.path.lexists(os.path.join(mirror_fs, "cgroup"))
    assert remount(mirror_fs, "cgroup_mirror").returncode == 0
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert remount(mirror_fs, "mode=0755").returncode == 0
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert "cgroup_mirror" in mount_options(mirror_fs)


def test_a_users_cgroup_entry_fails_the_remount_with_a_message(plain_fs: str) -> None:
    """An existing entry named cgroup: the remount fails with EEXIST and says why (fsconfig's
    message), and the entry is left as it was; a mirror held elsewhere stays there."""
    mine = os.path.join(plain_fs, "cgroup")
    os.makedirs(os.path.join(mine, "note"))
    fd = os.open(plain_fs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs_fd = rawbpf.fspick(fd)
        try:
            rawbpf.fsconfig_flag(fs_fd, "cgroup_mirror")
            with pytest.raises(OSError) as exc:
                rawbpf.fsconfig_reconfigure(fs_fd)
            assert exc.value.errno == errno.EEXIST
            assert "entry named cgroup" in rawbpf.fs_messages(fs_fd)
        finally:
            os.close(fs_fd)
    finally:
        os.close(fd)
    assert os.listdir(mine) == ["note"]
    assert "cgroup_mirror" not in mount_options(plain_fs)


def test_option_judged_by_the_mount_openers_credentials() -> None:
    """A context opened by root (fsopen) takes cgroup_mirror from an unprivileged helper it passed
    the fd to (v1 checked the helper's capabilities: EPERM); the mount then holds the mirror."""
    fs_fd = rawbpf.fsopen("bpf")
    target = tempfile.mkdtemp(prefix="cgstat-cred-")
    mnt = -1
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                rawbpf.fsconfig_flag(fs_fd, "cgroup_mirror")
                code = 0
            except OSError as err:
                code = 10 + (err.errno or 0)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged helper's fsconfig was refused"
        rawbpf.fsconfig_create(fs_fd)
        mnt = rawbpf.fsmount(fs_fd)
        rawbpf.move_mount(mnt, target)
        os.close(mnt)  # an fd on the mount's root would keep the umount below busy
        mnt = -1
        try:
            assert os.path.isdir(os.path.join(target, "cgroup"))
            assert "cgroup_mirror" in mount_options(target)
        finally:
            subprocess.run(["umount", target], check=True)
    finally:
        os.close(fs_fd)
        if mnt >= 0:
            os.close(mnt)
        os.rmdir(target)


def test_takeover_moves_the_mirror_from_a_holder_nobody_can_reach(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                                   cg: str, link_fds: list[int]) -> None:
    """The holder lives on only in a copied mount namespace (as an unprivileged `unshare -Urm`
    keeps it): a plain cgroup_mirror is refused (EBUSY), cgroup_mirror=takeover moves the mirror
    to the new instance, which gets every file, and the copy's instance loses its cgroup/ and its
    option. Before takeover existed, such a copy kept the host without a mirror for as long as it
    lived (the v3 review's finding)."""
    make_tree(cg, "a/b")
    link_fds.append(stat.attach(cg))
    stat.close()
    holder, copy_view = namespace_copy(mirror_fs)
    fresh: str | None = None
    try:
        assert os.path.isdir(os.path.join(copy_view, "cgroup"))
        subprocess.run(["umount", mirror_fs], check=True)
        err, log = refused_mirror_mount()
        assert (err, HELD in log, "takeover" in log) == (errno.EBUSY, True, True), log
        fresh = tempfile.mkdtemp(prefix="cgstat-takeover-")
        res = subprocess.run(["mount", "-t", "bpf", "-o", "cgroup_mirror=takeover", "bpf", fresh],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        assert "cgroup_mirror" in mount_options(fresh)
        assert stat_files(fresh) == cgroups_under(cg)
        assert link_desc(link_fds[0]).nr_files == len(cgroups_under(cg))
        assert not os.path.exists(os.path.join(copy_view, "cgroup")), "the old holder kept its files"
        # a mkdir now lands in the new holder only
        make_tree(cg, "a/c")
        assert stat_files(fresh) == cgroups_under(cg)
    finally:
        holder.kill()
        holder.wait()
        if fresh is not None:
            umount_bpffs(fresh)
        subprocess.run(["mount", "-t", "bpf", "bpf", mirror_fs], check=False)  # for the fixture's umount


def test_takeover_by_remount_and_back(stat: kernel_a1.KernelMirror, mirror_fs: str, plain_fs: str, cg: str,
                                      link_fds: list[int]) -> None:
    """remount,cgroup_mirror=takeover of a plain instance takes the mirror from a reachable holder,
    which loses its files and its option; a takeover of the holder itself changes nothing."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    res = remount(plain_fs, "cgroup_mirror=takeover")
    assert res.returncode == 0, res.stderr
    assert stat_files(plain_fs) == cgroups_under(cg)
    assert not os.path.exists(os.path.join(mirror_fs, "cgroup"))
    assert "cgroup_mirror" not in mount_options(mirror_fs)
    res = remount(plain_fs, "cgroup_mirror=takeover")
    assert res.returncode == 0 and stat_files(plain_fs) == cgroups_under(cg), res.stderr
    res = remount(mirror_fs, "cgroup_mirror=takeover")
    assert res.returncode == 0, res.stderr
    assert stat_files(mirror_fs) == cgroups_under(cg)
    assert not os.path.exists(os.path.join(plain_fs, "cgroup"))
    assert link_desc(link_fds[0]).nr_files == len(cgroups_under(cg))


def test_a_remount_context_made_before_a_change_does_not_undo_it(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                                  cg: str, link_fds: list[int]) -> None:
    """fspick of the holder makes a remount context; meanwhile `remount,nocgroup_mirror` turns the
    mirror off; reconfiguring the first context with an unrelated option (mode) must leave it off.
    Before this fix the context recorded "holds the mirror" when it was made and its reconfigure
    turned the mirror back on, which no one had asked for."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    fd = os.open(mirror_fs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs_fd = rawbpf.fspick(fd)
    finally:
        os.close(fd)
    try:
        res = remount(mirror_fs, "nocgroup_mirror")
        assert res.returncode == 0, res.stderr
        assert not os.path.exists(os.path.join(mirror_fs, "cgroup"))
        rawbpf.fsconfig_string(fs_fd, "mode", "1777")
        rawbpf.fsconfig_reconfigure(fs_fd)
    finally:
        os.close(fs_fd)
    assert not os.path.exists(os.path.join(mirror_fs, "cgroup")), "a stale remount context took the mirror back"
    assert "cgroup_mirror" not in mount_options(mirror_fs)
    assert link_desc(link_fds[0]).nr_files == 0
