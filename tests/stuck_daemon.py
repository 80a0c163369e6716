"""The real daemon (`bpffs-sync ...`, bpffs_sync.cli.main) with one fault, for tests/test_sdnotify.py: once a
cgroup named `hang` exists under the cgroup root, every pass blocks (a loop stuck inside a pass) until the
daemon is asked to stop; it writes $BPFFS_SYNC_TEST_HANG_MARKER when it starts blocking. Test-only.

    python tests/stuck_daemon.py BPFFS-SYNC-ARGS...
"""

from __future__ import annotations

import os
import sys

from bpffs_sync.cli import main
from bpffs_sync.mirror import daemon
from bpffs_sync.mirror.mirrors import Mirrors
from bpffs_sync.paths import RelPath

_real = daemon.Daemon._pass


def _pass(self: daemon.Daemon, key: str, scopes: list[RelPath], mirrors: Mirrors) -> bool:
    if os.path.isdir(os.path.join(self.layout.cgroup_root, "hang")):
        with open(os.environ["BPFFS_SYNC_TEST_HANG_MARKER"], "w", encoding="ascii"):
            pass
        self.stop_event.wait()
    return _real(self, key, scopes, mirrors)


daemon.Daemon._pass = _pass  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
