"""Resource limits are inputs: under a low RLIMIT_NOFILE the directory fd caches shrink (dirfd.
cache_limit) and the mirror still converges, one `fd_limit_low` line saying why it is slower."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable

import pytest
from helpers import Mirror, wait_for

TOPS, CHILDREN = 20, 30  # 620 cgroups with the root


def _nofile(limit: int) -> Callable[[], None]:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return set_limit


def _make_tree(mirror: Mirror, prefix: str = "t") -> None:
    for i in range(TOPS):
        os.mkdir(mirror.cg(f"{prefix}{i}"))
        for j in range(CHILDREN):
            os.mkdir(mirror.cg(f"{prefix}{i}/c{j}"))


def _events(text: str, name: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == name:
                out.append(doc)
    return out


def test_run_once_converges_under_nofile_40(mirror: Mirror) -> None:
    """`run --once` twice with RLIMIT_NOFILE 40 over 620 cgroups: in sync, no op failed, and the
    first run says once that the limit is low."""
    _make_tree(mirror)
    logs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-m", "bpffs_sync", "--log-format", "json", "run", "--once",
                              *mirror.args(), "--user-space"], capture_output=True, text=True, check=False,
                             env={**os.environ, **mirror.env}, preexec_fn=_nofile(40), timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        logs.append(res.stderr)
    res = mirror.cli("verify")
    assert res.returncode == 0, res.stdout
    assert not _events(logs[0] + logs[1], "op_failed"), logs[1][-3000:]
    low = _events(logs[0], "fd_limit_low")
    assert len(low) == 1 and low[0]["nofile"] == 40, logs[0]


@pytest.mark.parametrize("nofile", [40, 256])
def test_daemon_converges_under_a_low_nofile(mirror: Mirror, nofile: int) -> None:
    """The daemon with RLIMIT_NOFILE 40 or 256 (both below the old fixed 2 x 256-fd caches): 620
    cgroups made before it starts and 620 more while it runs (hints, not only full passes) are all
    mirrored, with no failed op."""
    _make_tree(mirror)
    mirror.start(resync_interval=600, preexec=_nofile(nofile))
    _make_tree(mirror, prefix="u")
    wait_for(lambda: all(os.path.exists(mirror.stat_path(f"u{i}/c{CHILDREN - 1}")) for i in range(TOPS)), 120,
             "the cgroups made while running mirrored")
    wait_for(mirror.in_sync, 120, "in sync")
    assert not _events(mirror.log(), "op_failed"), mirror.log()[-3000:]
