"""Test-only helpers for cgroup v1: private v1 cgroups and hierarchies the tests mount themselves.
No cgroup.kill on v1: tasks are moved to the parent (cgroup.procs), then directories go post-order."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from bpffs_sync.mirror.forest import hierarchies
from bpffs_sync.sandbox import _rmdir_post_order, wait_until
from v1_controllers.discovery import SELF_CGROUP, parse_self_cgroup

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
    res = subprocess.run(["mount", "-t", "cgroup", "-o", options, "none", path], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise OSError(f"mount -t cgroup -o {options} {path}: exit {res.returncode}: {res.stderr.strip()}")


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
        name = next(h.name for h in hierarchies() if path in h.mount_points)
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
                # A mount of the hierarchy between lives can fail (exit 32) and still leave it mounted
                # (seen here): the loop's next umount takes it down either way.
                with suppress(OSError):
                    _mount_cgroup_v1(options, path)
            if os.path.ismount(path):  # still busy at the deadline (a reader's fd, EBUSY): never leave it mounted
                warnings.warn(f"{path}: umount still busy after {timeout} s; detached lazily", stacklevel=1)
                subprocess.run(["umount", "-l", path], check=False, capture_output=True)
            os.rmdir(path)
