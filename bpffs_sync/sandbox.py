"""Private, throw-away kernel state for benchmarks and tests: a bpffs mount in a temp dir and a
cgroup subtree under the v2 root. Both context managers undo everything, also on error. Also the
guest suites' stats, loaded once per session (LoadedStats)."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from bpffs_sync.backends.statlink import StatLink
from bpffs_sync.mirror.bpffs import mount_of
from bpffs_sync.paths import Layout
from bpffs_sync.preflight import default_cgroup_root
from bpffs_sync.programs import StatProgram

S = TypeVar("S", bound=StatLink)


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


class CgroupChurn:
    """mkdir and rmdir of nested cgroups at random places under a tree, on a thread, until stopped: the
    race partner of the kernel series' walk tests. `during` counts the ops made while the block ran."""

    def __init__(self, tree: str, seed: int) -> None:
        self.tree = tree
        self.seed = seed
        self.rng = random.Random(seed)
        self.live: list[str] = []
        self.ops = 0
        self.during = 0  # ops between __enter__ returning and __exit__
        self.stop = threading.Event()
        self.running = threading.Event()
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self._churn()
        except OSError as err:
            self.error = err
            self.running.set()

    def _churn(self) -> None:
        n = 0
        while not self.stop.is_set():
            if self.live and self.rng.random() < 0.45:
                path = self.live.pop(self.rng.randrange(len(self.live)))
                try:
                    os.rmdir(path)
                except OSError as err:
                    if err.errno != errno.EBUSY:  # it has children: try later
                        raise
                    self.live.append(path)
                    continue
            else:
                parent = self.rng.choice([self.tree, *self.live[-50:]])
                path = os.path.join(parent, f"s{self.seed}n{n}")  # unique across churns of a tree
                n += 1
                os.mkdir(path)
                self.live.append(path)
            self.ops += 1
            self.running.set()

    def __enter__(self) -> CgroupChurn:
        """Returns once the thread is mkdir-ing and rmdir-ing (the race needs it running)."""
        self.thread.start()
        self.running.wait(timeout=30)
        self.during = -self.ops
        return self

    def __exit__(self, *exc: object) -> None:
        self.during += self.ops  # racy by a few ops at most: only > 0 is asserted
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise AssertionError(f"the churn thread failed: {self.error!r}")


class LoadedStats:
    """Stats loaded as kernel-series links once per test session and handed to each test in its own
    bpffs (StatLink.rehome: the map pinned and a collector attached there). One load of hist_oncpu
    takes minutes on the debug kernel under TCG, and the guest suites' fixtures would otherwise load
    it for every test. A test that closes its stat gets a fresh load the next time."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[type[StatLink], str], StatLink] = {}

    def get(self, cls: type[S], layout: Layout, spec: StatProgram) -> S:
        key = (cls, spec.name)
        cached = self._loaded.get(key)
        if isinstance(cached, cls) and not cached.closed:
            cached.rehome(layout)
            return cached
        fresh = cls(layout, spec)
        self._loaded[key] = fresh
        return fresh

    def close(self) -> None:
        for s in self._loaded.values():
            s.close()
        self._loaded.clear()

    def __enter__(self) -> LoadedStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
