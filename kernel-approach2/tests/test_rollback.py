"""Failure half way: every slab allocation of an Approach 2 link create, and of a mkdir under one and
two links, is made to fail in turn (/proc/thread-self/fail-nth with failslab). After each, the state
is all or nothing: a failed link create leaves no file and no link (and no file was ever shown: the
walk's files stay deactivated until it is done); a mkdir never fails because of the files, and
either made its cgroup with every covering link's file or counted what is missing in nr_errors;
nr_files always equals the files found."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from conftest import cgroups_under, files_under, link_desc, make_tree

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a2
from bpffs_sync.errors import LibbpfError

FAIL_NTH = "/proc/thread-self/fail-nth"
FAILSLAB = "/sys/kernel/debug/failslab"
MAX_NTH = 2000  # far more allocations than any of these operations makes
T = TypeVar("T")


@pytest.fixture
def failslab() -> Iterator[None]:
    """failslab armed for GFP_KERNEL allocations, quietly; restored afterwards."""
    if not os.path.exists(FAIL_NTH):
        pytest.skip("kernel without CONFIG_FAULT_INJECTION (kernel-approach1/config/base.config enables it)")
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


def stat_entries(root: str) -> set[str]:
    """Every bpf.stat.* file under root, as paths relative to it."""
    return {os.path.relpath(os.path.join(d, f), root)
            for d, _dirs, files in os.walk(root) for f in files if f.startswith("bpf.stat.")}


@pytest.mark.usefixtures("failslab")
def test_link_create_is_all_or_nothing(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int]) -> None:
    """Each failed link create leaves no file and no link; the first clean one makes every file."""
    make_tree(cg, "a/b.scope/c", "a/d", "e.slice/f")
    links_before = {d.link_id for d in libbpf.cgroupfs_stat_links()}
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)  # only the syscall under test runs with faults
    link_fds.append(cg_fd)
    prog_fd = stat.stat.reader.fd()
    failures = 0
    for nth in range(1, MAX_NTH):
        fd, err, injected = inject(nth, lambda: libbpf.link_create_cgroupfs_stat(prog_fd, cg_fd))
        if fd is None:
            assert err is not None and getattr(err, "errno", errno.ENOMEM) in (errno.ENOMEM, errno.ENOSPC), \
                f"nth={nth}: {err!r}"
            assert stat_entries(cg) == set(), f"nth={nth}: failed link create left files"
            assert {d.link_id for d in libbpf.cgroupfs_stat_links()} == links_before, f"nth={nth}: link left"
            failures += 1
            continue
        # success, though a fault may have hit an allocation that is allowed to fail (a preload)
        desc = link_desc(fd)
        assert files_under(cg) == cgroups_under(cg), f"nth={nth}"
        assert (desc.nr_files, desc.nr_errors) == (len(cgroups_under(cg)), 0), f"nth={nth}"
        if not injected:
            link_fds.append(fd)
            break
        libbpf.link_detach(fd)
        os.close(fd)
        assert stat_entries(cg) == set(), f"nth={nth}: detach left files"
    else:
        pytest.fail("link create never succeeded")
    assert failures >= 5  # the walk allocates: kernfs nodes, names, link, file


@pytest.mark.usefixtures("failslab")
@pytest.mark.parametrize("nlinks", [1, 2])
def test_mkdir_never_fails_for_the_files(stat: kernel_a2.CgroupfsStat, cg: str, link_fds: list[int],
                                         nlinks: int) -> None:
    """A mkdir failed in turn at every allocation: it fails only where cgroupfs itself fails, and a
    cgroup that exists has every covering link's file or the missing ones in nr_errors; nr_files
    matches the files found after every attempt."""
    make_tree(cg, "sub")
    link_fds.append(stat.attach(cg, "one"))
    if nlinks == 2:
        link_fds.append(stat.attach(os.path.join(cg, "sub"), "two"))
    target = os.path.join(cg, "sub", "new")
    counted = 0
    for nth in range(1, MAX_NTH):
        _res, err, injected = inject(nth, lambda: os.mkdir(target))
        made = os.path.isdir(target)
        assert made == (err is None), f"nth={nth}: mkdir said {err!r} but the cgroup exists={made}"
        descs = [link_desc(fd) for fd in link_fds]
        errors = sum(d.nr_errors for d in descs)
        if made:
            have = {f for f in os.listdir(target) if f.startswith("bpf.stat.")}
            assert len(have) + (errors - counted) == nlinks, f"nth={nth}: {have}, nr_errors {errors}"
            counted = errors
        else:
            assert errors == counted, f"nth={nth}: a failed mkdir counted errors"
        for desc in descs:
            assert desc.nr_files == len(files_under(cg, desc.name)), f"nth={nth}: nr_files of {desc.name}"
        if made:
            os.rmdir(target)
        if not injected:
            assert made, f"nth={nth}: a mkdir with no fault failed: {err!r}"
            break
    else:
        pytest.fail("mkdir never succeeded")
    assert not os.path.exists(target)
    want = {"bpf.stat.one", "sub/bpf.stat.one"} | ({"sub/bpf.stat.two"} if nlinks == 2 else set())
    assert stat_entries(cg) == want
