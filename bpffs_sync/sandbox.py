"""Private, throw-away kernel state for benchmarks and tests: a bpffs mount in a temp dir and a
cgroup subtree under the v2 root. Both context managers undo everything, also on error. The
fixtures only tests use (CgroupChurn, LoadedStats) live in tests/series_fixtures.py."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from bpffs_sync.mirror.bpffs import mount_of
from bpffs_sync.preflight import default_cgroup_root


def wait_until(pred: Callable[[], bool], timeout: float, what: str = "condition", poll: float = 0.005) -> float:
    """Poll pred until true; returns the seconds waited. TimeoutError after timeout seconds."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not true after {timeout:g} s")
        time.sleep(poll)
    return time.monotonic() - start


def mount_bpffs(options: str = "") -> str:
    path = tempfile.mkdtemp(prefix="bpffs-sync-test-")
    cmd = ["mount", "-t", "bpf", *(["-o", options] if options else []), "bpf", path]
    subprocess.run(cmd, check=True)
    return path


def umount_bpffs(path: str) -> None:
    subprocess.run(["umount", path], check=False, capture_output=True)
    m = mount_of(path)
    if m is not None and m.mount_point == os.path.realpath(path):
        subprocess.run(["umount", "-l", path], check=False)
    os.rmdir(path)


def make_cgroup_root(prefix: str = "bpffs-sync-test") -> str:
    path = os.path.join(default_cgroup_root(), f"{prefix}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    return path


def remove_cgroup_tree(root: str, timeout: float = 10.0) -> None:
    """Kill every process below root (cgroup.kill), then rmdir post-order, retrying while tasks exit."""
    if not os.path.isdir(root):
        return
    kill = os.path.join(root, "cgroup.kill")
    if os.path.exists(kill):
        with open(kill, "w", encoding="ascii") as f:
            f.write("1")
    _rmdir_post_order(root, timeout)


def _rmdir_post_order(root: str, timeout: float, before: Callable[[str], None] | None = None) -> None:
    """rmdir root and everything below, deepest first, retrying (tasks take a moment to leave)
    until timeout; before(d) runs ahead of each rmdir. Relative to directory fds, so a chain of
    cgroups longer than PATH_MAX goes too."""
    deadline = time.monotonic() + timeout
    parent, name = os.path.split(root.rstrip("/"))
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                _rmdir_tree_at(pfd, name, root, before)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
    finally:
        os.close(pfd)


def _rmdir_tree_at(parent_fd: int, name: str, path: str, before: Callable[[str], None] | None) -> None:
    """One post-order sweep below parent_fd/name; OSError when something would not go (yet).
    A directory is opened when its turn comes, so the fds held are one per level, however wide."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    stack: list[tuple[int, int, str, str, bool]] = [(-1, parent_fd, name, path, False)]
    try:
        while stack:
            fd, pfd, dname, dpath, listed = stack.pop()
            if not listed:
                fd = os.open(dname, flags, dir_fd=pfd)
                stack.append((fd, pfd, dname, dpath, True))
                with os.scandir(fd) as it:
                    subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
                stack.extend((-1, fd, n, os.path.join(dpath, n), False) for n in subdirs)
                continue
            os.close(fd)
            if before is not None:
                before(dpath)
            with suppress(FileNotFoundError):
                os.rmdir(dname, dir_fd=pfd)
    finally:
        for fd, *_ in stack:
            if fd >= 0:
                os.close(fd)


@contextmanager
def private_bpffs(options: str = "") -> Iterator[str]:
    path = mount_bpffs(options)
    try:
        yield path
    finally:
        umount_bpffs(path)


@contextmanager
def private_cgroup_root(prefix: str = "bpffs-sync-test") -> Iterator[str]:
    path = make_cgroup_root(prefix)
    try:
        yield path
    finally:
        remove_cgroup_tree(path)
