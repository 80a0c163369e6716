"""The real daemon (`bpffs-sync ...`, bpffs_sync.cli.main) with faults injected into its watchers'
readers, for tests/test_watch_supervision.py. Test-only: nothing in the package knows of it.

    python tests/fault_daemon.py BPFFS-SYNC-ARGS...

- a cgroup directory named `boom` makes CgroupWatcher.on_event raise (past the watcher's own
  boundary, so the reader thread's boundary sees it);
- with BPFFS_SYNC_TEST_MOUNTS_RAISE=1, the mount watcher's first hint raises;
- SIGUSR1 closes every inotify fd of the process, SIGUSR2 every fd open on a mountinfo file: each
  "from outside" the reader thread (in the main thread, between its polls).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from bpffs_sync.cli import main
from bpffs_sync.mirror import watch

BOOM = b"boom"


def _patch_cgroup_watcher() -> None:
    real = watch.CgroupWatcher.on_event

    def on_event(self: watch.CgroupWatcher, event: Any) -> None:
        if event.name == BOOM:
            raise RuntimeError("injected: a callback raised")
        real(self, event)

    watch.CgroupWatcher.on_event = on_event  # type: ignore[method-assign]


def _patch_mount_watcher() -> None:
    real = watch.MountWatcher.__init__
    fired = [False]

    def init(self: watch.MountWatcher, hint: Any, *args: Any, **kw: Any) -> None:
        def first_raises() -> None:
            if not fired[0]:
                fired[0] = True
                raise RuntimeError("injected: the mount hint raised")
            hint()

        real(self, first_raises, *args, **kw)

    watch.MountWatcher.__init__ = init  # type: ignore[method-assign]


def _close_fds(target: str) -> None:
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link == target or (target == "mountinfo" and link.endswith("/mountinfo")):
            os.close(int(fd))


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _close_fds("anon_inode:inotify" if signum == signal.SIGUSR1 else "mountinfo")


if __name__ == "__main__":
    _patch_cgroup_watcher()
    if os.environ.get("BPFFS_SYNC_TEST_MOUNTS_RAISE") == "1":
        _patch_mount_watcher()
    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGUSR2, _on_signal)
    sys.argv[0] = "bpffs-sync"
    sys.exit(main())
