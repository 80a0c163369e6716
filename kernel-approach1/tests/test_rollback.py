"""Failure half way: every slab allocation of link create, of a mirrored mkdir and of enabling the
mirror is made to fail in turn (/proc/thread-self/fail-nth with failslab), and after each the
mirror must be all or nothing: a failed link create leaves no file, directory or link behind; a
mkdir never fails because of the mirror and counts what it could not mirror in nr_errors, leaving
no empty directory; a failed remount leaves no mirror. rmdir/detach/umount then leave exactly the
state before. lockdep/KASAN/kmemleak on the debug variant watch the same paths."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from conftest import link_desc
from test_cgroup_stat import NAME, cgroups_under, make_tree, mirror_of, stat_files

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.errors import LibbpfError
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

FAIL_NTH = "/proc/thread-self/fail-nth"
FAILSLAB = "/sys/kernel/debug/failslab"
MAX_NTH = 2000  # far more allocations than any of these operations makes
T = TypeVar("T")


@pytest.fixture
def failslab() -> Iterator[None]:
    """failslab armed for GFP_KERNEL allocations, quietly; restored afterwards."""
    if not os.path.exists(FAIL_NTH):
        pytest.skip("kernel without CONFIG_FAULT_INJECTION (config/base.config enables it)")
    if not os.path.isdir(FAILSLAB):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], check=False, capture_output=True)
    knobs = {"ignore-gfp-wait": "N", "verbose": "0"}
    saved = {}
    for knob, value in knobs.items():
        path = os.path.join(FAILSLAB, knob)
        with open(path, encoding="ascii") as f:
            saved[knob] = f.read().strip()
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    try:
        yield
    finally:
        for knob, value in saved.items():
            with open(os.path.join(FAILSLAB, knob), "w", encoding="ascii") as f:
                f.write(value)


def inject(nth: int, fn: Callable[[], T]) -> tuple[T | None, BaseException | None, bool]:
    """Run fn with the nth fault point of this thread failing: (result, error, injected?)."""
    fd = os.open(FAIL_NTH, os.O_RDWR)
    try:
        os.write(fd, str(nth).encode())
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except (OSError, LibbpfError, MemoryError) as err:
            error = err
        finally:
            left = int(os.pread(fd, 32, 0))
            os.write(fd, b"0")
    finally:
        os.close(fd)
    return result, error, left == 0


def snapshot(mirror_fs: str) -> set[str]:
    """Every entry under the mirror (directories end in /)."""
    top = os.path.join(mirror_fs, "cgroup")
    found = set()
    for dirpath, _dirs, files in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        found.add(rel + "/")
        found.update(os.path.join(rel, f) for f in files)
    return found


def empty_dirs(mirror_fs: str) -> list[str]:
    top = os.path.join(mirror_fs, "cgroup")
    return [d for d, dirs, files in os.walk(top) if d != top and not dirs and not files]


def errno_of(err: BaseException) -> int:
    return getattr(err, "errno", None) or errno.ENOMEM


@pytest.mark.usefixtures("failslab")
@pytest.mark.parametrize("root_rel", [".", "a/b.scope"], ids=["top-level-root", "nested-root"])
def test_link_create_is_all_or_nothing(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                       link_fds: list[int], root_rel: str) -> None:
    """nested-root: the link's root is two levels below cg, so link create must also make the
    directories above it. v3 before this fix made those in a "populate begin" step whose ENOMEM
    was counted as a name collision: link create returned success with nr_files 0."""
    make_tree(cg, "a/b.scope/c", "a/d", "e.slice/f")
    root = os.path.normpath(os.path.join(cg, root_rel))
    before = snapshot(mirror_fs)
    links_before = {d.link_id for d in libbpf.cgroup_stat_links()}
    failures = 0
    cg_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # only the syscall under test runs with faults
    link_fds.append(cg_fd)
    prog_fd = stat.stat.reader.fd()
    for nth in range(1, MAX_NTH):
        fd, err, injected = inject(nth, lambda: libbpf.link_create_cgroup_stat(prog_fd, cg_fd))
        if fd is None:
            # ENOMEM mostly; an allocation failing inside idr/xarray reads ENOSPC
            assert err is not None and errno_of(err) in (errno.ENOMEM, errno.ENOSPC), f"nth={nth}: {err!r}"
            assert snapshot(mirror_fs) == before, f"nth={nth}: failed link create left entries"
            assert {d.link_id for d in libbpf.cgroup_stat_links()} == links_before, f"nth={nth}: link left"
            failures += 1
            continue
        desc = link_desc(fd)
        assert stat_files(mirror_fs) == cgroups_under(root), f"nth={nth}: link made, mirror incomplete"
        assert (desc.nr_files, desc.nr_errors) == (len(cgroups_under(root)), 0), f"nth={nth}"
        libbpf.link_detach(fd)
        os.close(fd)
        assert snapshot(mirror_fs) == before, f"nth={nth}: detach left entries"
        if not injected:
            break
    else:
        pytest.fail(f"link create still hit a fault point after {MAX_NTH} allocations")
    assert failures > 5  # the walk really was cut at many points


@pytest.mark.usefixtures("failslab")
@pytest.mark.parametrize("case", [("a/x.scope", {NAME, "other"}), ("b/y", {NAME})], ids=["two-links", "one-link"])
def test_mkdir_never_fails_for_the_mirror(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                          link_fds: list[int], case: tuple[str, set[str]]) -> None:
    """cg has a link, cg/a a second one: a/x.scope gets two files, b/y one (so a failed file can
    leave its directory empty, which must not stay)."""
    rel, names = case
    make_tree(cg, "a", "b")
    link_fds.append(stat.attach(cg))
    link_fds.append(stat.attach(os.path.join(cg, "a"), "other"))
    before = snapshot(mirror_fs)
    nr_files = [link_desc(fd).nr_files for fd in link_fds]
    target = os.path.join(cg, rel)
    mirror = mirror_of(mirror_fs, target)
    mirrored_errors = 0
    for nth in range(1, MAX_NTH):
        errors0 = sum(link_desc(fd).nr_errors for fd in link_fds)
        _, err, injected = inject(nth, lambda: os.mkdir(target))
        errors = sum(link_desc(fd).nr_errors for fd in link_fds) - errors0
        if err is not None:  # cgroupfs itself could not make it: no trace of it anywhere
            assert not os.path.exists(target) and snapshot(mirror_fs) == before, f"nth={nth}: {err!r}"
            assert errors == 0, f"nth={nth}"
            continue
        present = set(os.listdir(mirror)) if os.path.isdir(mirror) else set()
        assert present <= names, f"nth={nth}: {present}"
        assert len(present) + errors == len(names), f"nth={nth}: {present} and {errors} errors"
        assert empty_dirs(mirror_fs) == [], f"nth={nth}: empty directory left"
        mirrored_errors += errors
        os.rmdir(target)
        assert snapshot(mirror_fs) == before, f"nth={nth}: rmdir left entries"
        assert [link_desc(fd).nr_files for fd in link_fds] == nr_files, f"nth={nth}: file refs off"
        if not injected:
            break
    else:
        pytest.fail(f"mkdir still hit a fault point after {MAX_NTH} allocations")
    assert mirrored_errors > 0  # some failures did land in the mirror, and were absorbed


def _remount_mirror(path: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ms_remount = 32
    if libc.mount(b"bpf", os.fsencode(path), b"bpf", ms_remount, b"cgroup_mirror") != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), path)
    return 0


@pytest.mark.usefixtures("failslab")
def test_enabling_the_mirror_is_all_or_nothing(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                               link_fds: list[int]) -> None:
    """Links exist; a remount with cgroup_mirror that fails half way leaves no mirror."""
    make_tree(cg, "a/b", "c.slice")
    link_fds.append(stat.attach(cg))
    stat.close()  # its pin directory fd would keep the instance alive past umount (a lazy umount)
    umount_bpffs(mirror_fs)  # the links stay, with no files
    os.makedirs(mirror_fs)  # for the fixture's umount
    assert link_desc(link_fds[0]).nr_files == 0
    for nth in range(1, MAX_NTH):
        fs = mount_bpffs()
        try:
            _, err, injected = inject(nth, lambda: _remount_mirror(fs))  # noqa: B023
            if err is not None:
                assert not kernel_a1.mirror_enabled(fs), f"nth={nth}"
                assert not os.path.exists(os.path.join(fs, "cgroup")), f"nth={nth}: mirror left"
                assert link_desc(link_fds[0]).nr_files == 0, f"nth={nth}"
            else:
                assert kernel_a1.mirror_enabled(fs) and stat_files(fs) == cgroups_under(cg), f"nth={nth}"
        finally:
            umount_bpffs(fs)
        assert link_desc(link_fds[0]).nr_files == 0, f"nth={nth}: files outlived the instance"
        if err is None and not injected:
            break
    else:
        pytest.fail(f"remount still hit a fault point after {MAX_NTH} allocations")
