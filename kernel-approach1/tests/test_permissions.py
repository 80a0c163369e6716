"""Ownership, mode and write refusal of the mirror's entries (the rule is in patch 3's inode.c
comment: owned by the instance root's owner and group, 0551 directories and 0444 files, every
file readable by all by its path, directories listed by the owner and group only,
writable by nobody). The entries are not S_IMMUTABLE any more; every refusal S_IMMUTABLE gave must
now come from the inode operations, which these tests pin down."""

from __future__ import annotations

import errno
import os
import stat as st
import subprocess
from collections.abc import Callable

import pytest
from conftest import CGROUP2

from bpffs_sync.backends import kernel_a1

NAME = "hist_oncpu"
NOBODY = 65534


def mirror_dir(mirror_fs: str, cgroup_dir: str) -> str:
    return os.path.join(mirror_fs, "cgroup", os.path.relpath(cgroup_dir, CGROUP2))


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_owner_and_mode_follow_the_stated_rule(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """A cgroup made by a delegated user: its directory 0551 and file 0444, owned by the instance root."""
    delegated = os.path.join(cg, "user")
    os.mkdir(delegated)
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(delegated, entry), NOBODY, NOBODY)
    link_fds.append(stat.attach(cg))
    res = as_nobody("mkdir", os.path.join(delegated, "job.scope"))
    assert res.returncode == 0, res.stderr
    mdir = os.path.join(mirror_dir(mirror_fs, cg), "user", "job.scope")
    root = os.stat(mirror_fs)
    for path, mode in ((mdir, 0o551), (os.path.join(mdir, NAME), 0o444)):
        s = os.stat(path)
        assert (st.S_IMODE(s.st_mode), s.st_uid, s.st_gid) == (mode, root.st_uid, root.st_gid), path


def test_delegated_owner_cats_its_file(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """The non-root owner of a delegated subtree reads its cgroup's file with cat."""
    delegated = os.path.join(cg, "user")
    os.mkdir(delegated)
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(delegated, entry), NOBODY, NOBODY)
    link_fds.append(stat.attach(cg))
    assert as_nobody("mkdir", os.path.join(delegated, "job.scope")).returncode == 0
    res = as_nobody("cat", os.path.join(mirror_dir(mirror_fs, cg), "user", "job.scope", NAME))
    assert res.returncode == 0, res.stderr
    assert f"cgroup_id: {os.stat(os.path.join(delegated, 'job.scope')).st_ino}" in res.stdout


def test_root_cannot_change_entries(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> None:
    """chown, utime, setxattr, truncate, a hard link out and moving a directory in are refused to root (EPERM)."""
    os.mkdir(os.path.join(cg, "a"))
    link_fds.append(stat.attach(cg))
    mdir = os.path.join(mirror_dir(mirror_fs, cg), "a")
    mfile = os.path.join(mdir, NAME)
    user_dir = os.path.join(mirror_fs, "mine")
    os.mkdir(user_dir)
    ops: list[Callable[[], object]] = [
        lambda: os.chown(mfile, NOBODY, NOBODY),
        lambda: os.chown(mdir, NOBODY, NOBODY),
        lambda: os.utime(mfile, (0, 0)),
        lambda: os.setxattr(mfile, "trusted.mark", b"x"),
        lambda: os.truncate(mfile, 0),
        lambda: os.rename(user_dir, os.path.join(mdir, "mine")),
        lambda: os.link(mfile, os.path.join(mirror_fs, "stolen")),
        lambda: os.rename(user_dir, os.path.join(mirror_fs, "cgroup")),
    ]
    try:
        for op in ops:
            with pytest.raises(OSError) as exc:
                op()
            assert exc.value.errno == errno.EPERM
    finally:
        os.rmdir(user_dir)


def test_top_directory_stays_without_links(mirror_fs: str) -> None:
    """The mirror's empty cgroup/ directory cannot be removed or renamed away, not even by root."""
    top = os.path.join(mirror_fs, "cgroup")
    assert os.listdir(top) == []
    ops: list[Callable[[], object]] = [lambda: os.rmdir(top), lambda: os.rename(top, os.path.join(mirror_fs, "moved"))]
    for op in ops:
        with pytest.raises(OSError) as exc:
            op()
        assert exc.value.errno == errno.EPERM
    assert os.path.isdir(top)


def test_no_entry_is_a_mountpoint(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> None:
    """Kernel-owned entries cannot be mounted on (dont_mount()): rmdir of a cgroup, under cgroup_mutex,
    never has mounts to detach (before: both mounts succeeded and the rmdir unmounted them)."""
    job = os.path.join(cg, "job")
    os.mkdir(job)
    link_fds.append(stat.attach(cg))
    d = mirror_dir(mirror_fs, job)
    tries = {
        "tmpfs on a directory": ["mount", "-t", "tmpfs", "none", d],
        "bind on a file": ["mount", "--bind", "/etc/hostname", os.path.join(d, NAME)],
    }
    results = {what: subprocess.run(cmd, capture_output=True, text=True, check=False) for what, cmd in tries.items()}
    for what, res in results.items():
        if res.returncode == 0:  # never leave it mounted
            subprocess.run(["umount", tries[what][-1]], check=False)
    assert {what: res.returncode != 0 for what, res in results.items()} == dict.fromkeys(tries, True)
    assert not os.path.ismount(d)
    os.rmdir(job)
    assert not os.path.exists(d)
