"""The test sandbox's own clean-up: every cgroup a test makes goes, however wide or deep the tree."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, resource
from bpffs_sync.sandbox import make_cgroup_root, remove_cgroup_tree
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
root = make_cgroup_root("bpffs-sync-test-wide")
try:
    for i in range(300):
        os.mkdir(os.path.join(root, f"c{i}"))
    os.makedirs(os.path.join(root, "c7", "a", "b", "c"))
finally:
    remove_cgroup_tree(root)
print(os.path.exists(root))
"""


def test_remove_cgroup_tree_wider_than_the_fd_limit() -> None:
    """300 siblings under a 64-fd limit: removed (the walk held an fd per sibling and hit EMFILE)."""
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
