"""cgroup-v1 trees through the same reconciler: verify --v1 exit codes and exact drift, odd names,
kill -9 mid-burst, and the host's whole memory hierarchy."""

from __future__ import annotations

import json
import os

import pytest
from helpers import Burst, Mirror, kill9_mid_burst, wait_for

MEM = "cgroup-v1/memory"


def v1_path(mirror: Mirror, rel: str, stat: str = "memcg_histo", tree: str = MEM) -> str:
    return os.path.join(mirror.bpffs, tree, rel, stat)


def in_sync_v1(mirror: Mirror, *selectors: str) -> bool:
    args = [a for s in selectors for a in ("--v1", s)]
    return mirror.cli("verify", *args).returncode == 0


def test_verify_v1_in_sync_exits_zero(mirror: Mirror, v1_memory: str) -> None:
    """After one pass over a memory subtree, verify --v1 exits 0, in text and JSON."""
    os.makedirs(os.path.join(v1_memory, "jobs/a"))
    mirror.cli("run", "--once", "--v1", v1_memory, check=True)
    res = mirror.cli("verify", "--v1", v1_memory)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("in sync: 3 cgroups, 3 stat files under")
    doc = json.loads(mirror.cli("verify", "--v1", v1_memory, "--json").stdout)
    assert doc["in_sync"] is True and doc["top_drift"] == {}
    [tree] = doc["trees"]
    assert tree["tree"] == MEM and tree["cgroup_root"] == v1_memory and tree["drift"] == {}
    assert tree["hierarchy_id"] > 0
    with open(v1_path(mirror, "jobs/a"), encoding="utf-8") as f:
        assert f.readline() == f"cgroup_id: {os.stat(os.path.join(v1_memory, 'jobs/a')).st_ino}\n"


def test_verify_v1_lists_exact_drift(mirror: Mirror, v1_memory: str) -> None:
    """A removed pin, a removed directory and a stale one: exit 1, each named with its reason."""
    for rel in ("jobs/a", "jobs/b", "jobs/c"):
        os.makedirs(os.path.join(v1_memory, rel))
    mirror.cli("run", "--once", "--v1", v1_memory, check=True)
    os.unlink(v1_path(mirror, "jobs/a"))  # missing pin
    os.unlink(v1_path(mirror, "jobs/b"))
    os.rmdir(os.path.dirname(v1_path(mirror, "jobs/b")))  # missing directory (and its pin)
    os.mkdir(os.path.join(mirror.bpffs, MEM, "ghost"))  # stale
    ids = {r: os.stat(os.path.join(v1_memory, "jobs", r)).st_ino for r in "ab"}
    res = mirror.cli("verify", "--v1", v1_memory)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert f"missing        jobs/a/memcg_histo (cgroup {ids['a']})" in lines
    assert "missing        jobs/b" in lines
    assert f"missing        jobs/b/memcg_histo (cgroup {ids['b']})" in lines
    assert "stale          ghost" in lines
    assert lines[-1].startswith("DRIFT: 4 entries")
    doc = json.loads(mirror.cli("verify", "--v1", v1_memory, "--json").stdout)
    assert doc["in_sync"] is False
    drift = doc["trees"][0]["drift"]
    assert drift["missing"] == [
        {"path": "jobs/a/memcg_histo", "kind": "file", "expected_cgroup_id": ids["a"]},
        {"path": "jobs/b", "kind": "dir"},
        {"path": "jobs/b/memcg_histo", "kind": "file", "expected_cgroup_id": ids["b"]},
    ]
    assert drift["stale"] == [{"path": "ghost", "kind": "entry"}]
    mirror.cli("run", "--once", "--v1", v1_memory, check=True)  # and one pass repairs it all
    assert in_sync_v1(mirror, v1_memory)


def test_daemon_follows_v1_mkdir_rmdir(mirror: Mirror, v1_memory: str) -> None:
    """inotify on v1 cgroupfs: nested mkdir appears, rmdir disappears, the memcg is freed."""
    mirror.start("--v1", v1_memory)
    os.makedirs(os.path.join(v1_memory, "x/y/z"))
    wait_for(lambda: os.path.exists(v1_path(mirror, "x/y/z")), 10, "x/y/z mirrored")
    for rel in ("x/y/z", "x/y", "x"):
        os.rmdir(os.path.join(v1_memory, rel))
    wait_for(lambda: not os.path.exists(os.path.join(mirror.bpffs, MEM, "x")), 10, "x unmirrored")
    assert in_sync_v1(mirror, v1_memory)


NAMES = {
    "dots": "system.slice",
    "space": "with space",
    "utf8": "jöbs-日本",
    "max_ascii": "x" * 255,
    "max_utf8": "é" * 127 + "x",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=list(NAMES))
def test_v1_odd_name_is_mirrored(mirror: Mirror, v1_memory: str, name: str) -> None:
    """Dots, spaces, UTF-8 and 255-byte names in a v1 tree, verbatim, serving the right cgroup."""
    mirror.start("--v1", v1_memory)
    os.makedirs(os.path.join(v1_memory, name, "child.scope"))
    rel = f"{name}/child.scope"
    wait_for(lambda: os.path.exists(v1_path(mirror, rel)), 10, f"{name!r} mirrored")
    with open(v1_path(mirror, rel), encoding="utf-8") as f:
        assert f.readline() == f"cgroup_id: {os.stat(os.path.join(v1_memory, rel)).st_ino}\n"
    assert in_sync_v1(mirror, v1_memory)
    assert os.stat(os.path.join(mirror.bpffs, MEM, name)).st_mode & 0o777 == 0o755


def test_v1_kill9_mid_burst_then_restart_converges(mirror: Mirror, v1_memory: str) -> None:
    """kill -9 during a mkdir burst in a v1 tree, change the tree, restart: in sync after one pass."""
    mirror.start("--v1", v1_memory)
    b = Burst(v1_memory, "b")
    made = kill9_mid_burst(mirror, b, v1_path(mirror, b.rel(0)))
    assert mirror.cli("verify", "--v1", v1_memory).returncode == 1  # made after the kill: not mirrored
    for i in range(0, made, 3):
        os.rmdir(os.path.join(v1_memory, b.rel(i)))
    os.makedirs(os.path.join(v1_memory, "after/crash"))
    mirror.start("--v1", v1_memory, resync_interval=3600)
    res = mirror.cli("verify", "--v1", v1_memory)
    assert res.returncode == 0, res.stdout


def test_verify_v1_memory_whole_hierarchy(mirror: Mirror) -> None:
    """`verify --v1 memory` on this machine's real memory hierarchy: 0 once the daemon mirrors it."""
    if not os.path.exists("/sys/fs/cgroup/memory/cgroup.procs"):
        pytest.skip("no cgroup v1 memory hierarchy")
    mirror.start("--v1", "memory")
    wait_for(lambda: in_sync_v1(mirror, "memory"), 20, "verify --v1 memory to pass")
    doc = json.loads(mirror.cli("verify", "--v1", "memory", "--json").stdout)
    assert doc["trees"][0]["cgroup_root"] == "/sys/fs/cgroup/memory"
    assert os.path.exists(os.path.join(mirror.bpffs, MEM, "memcg_histo"))
    status = mirror.status()
    assert "cgroup-v1/memory" in status["daemon"]["trees"]  # type: ignore[index]
    assert status["v1"]["memory"]["stat_files"] >= 1  # type: ignore[index]
