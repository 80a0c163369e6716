"""Private, throw-away kernel state for benchmarks and tests: a bpffs mount in a temp dir and a
cgroup subtree under the v2 root. Both context managers undo everything, also on error."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from v1_controllers import discover
from v1_controllers.discovery import SELF_CGROUP, parse_self_cgroup

from .bpffs import mount_of
from .preflight import default_cgroup_root


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
    until timeout; before(d) runs ahead of each rmdir."""
    deadline = time.monotonic() + timeout
    while os.path.isdir(root):
        for d in sorted((d for d, _, _ in os.walk(root)), key=len, reverse=True):
            if before is not None:
                before(d)
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


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


# --- cgroup v1 ----------------------------------------------------------------------------------
# No cgroup.kill on v1: tasks are moved to the parent (cgroup.procs), then directories go post-order.


def _evacuate(cgroup_dir: str, parent: str) -> None:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), encoding="ascii") as f:
            pids = f.read().split()
    except OSError:
        return
    for pid in pids:
        try:
            with open(os.path.join(parent, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(pid)
        except OSError:
            pass  # exited meanwhile


def remove_v1_cgroup_tree(root: str, timeout: float = 10.0) -> None:
    """Move every task below root to root's parent, then rmdir post-order (retrying while they move)."""
    parent = os.path.dirname(root.rstrip("/"))
    _rmdir_post_order(root, timeout, lambda d: _evacuate(d, parent))


@contextmanager
def private_v1_cgroup(hierarchy_root: str, prefix: str = "bpffs-sync-test") -> Iterator[str]:
    """A fresh cgroup directly below a v1 hierarchy's root, removed afterwards."""
    path = os.path.join(hierarchy_root, f"{prefix}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        remove_v1_cgroup_tree(path)


def _hierarchy_alive(name: str) -> bool:
    with open(SELF_CGROUP, encoding="utf-8") as f:
        return name in parse_self_cgroup(f.read())


def _mount_cgroup_v1(options: str, path: str) -> None:
    subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], check=True, capture_output=True)


@contextmanager
def mounted_v1_hierarchy(options: str, timeout: float = 10.0) -> Iterator[str]:
    """Mount a cgroup v1 hierarchy (`-o options`) on a temp dir, one such test at a time (free
    controllers are a host-wide resource). Afterwards its child cgroups go first, then the mount;
    the hierarchy must be gone too: a umount racing the release of a just-removed child leaves it
    alive and unmounted, holding its controllers, so it is mounted and unmounted again until gone."""
    os.makedirs("/run/bpffs-sync", exist_ok=True)
    with open("/run/bpffs-sync/test-v1-mount.lock", "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = tempfile.mkdtemp(prefix="bpffs-sync-v1-")
        try:
            _mount_cgroup_v1(options, path)
        except BaseException:
            os.rmdir(path)
            raise
        name = next(h.name for h in discover() if path in h.mount_points)
        try:
            yield path
        finally:
            for child in os.listdir(path):
                if os.path.isdir(os.path.join(path, child)):
                    remove_v1_cgroup_tree(os.path.join(path, child))
            deadline = time.monotonic() + timeout
            while True:
                subprocess.run(["umount", path], check=False, capture_output=True)
                try:  # the root is released asynchronously (percpu ref, RCU, work queue)
                    wait_until(lambda: not _hierarchy_alive(name), 1.0, "hierarchy released", poll=0.02)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        break
                _mount_cgroup_v1(options, path)
            os.rmdir(path)
