"""The mirror follows cgroupfs; verify reports exactly what drifted (text and --json)."""

from __future__ import annotations

import json
import os

from helpers import Mirror, wait_for

from bpffs_sync import libbpf

DEEP = "l1/l2/l3/l4/l5/l6"


def test_nested_mkdir_and_rmdir_follow(mirror: Mirror) -> None:
    """mkdir -p of depth 6 appears in the mirror; rmdir of it all disappears, pins first."""
    mirror.start()
    os.makedirs(mirror.cg(DEEP))
    wait_for(lambda: os.path.exists(mirror.stat_path(DEEP)), 10, "deep stat file")
    for depth in range(1, 7):
        rel = "/".join(DEEP.split("/")[:depth])
        assert os.path.exists(mirror.stat_path(rel)), rel
    for depth in range(6, 0, -1):
        os.rmdir(mirror.cg("/".join(DEEP.split("/")[:depth])))
    wait_for(lambda: not os.path.exists(os.path.join(mirror.bpffs, "cgroup", "l1")), 10, "mirror of l1 gone")
    assert mirror.in_sync()


def test_rmdir_unpins_promptly_so_cgroup_dies(mirror: Mirror) -> None:
    """A pin keeps a removed cgroup alive; the mirror unpins on rmdir, so nr_dying_descendants drops."""
    mirror.start()
    os.mkdir(mirror.cg("gone"))
    wait_for(lambda: os.path.exists(mirror.stat_path("gone")), 10, "stat file")
    os.rmdir(mirror.cg("gone"))
    wait_for(lambda: not os.path.exists(mirror.stat_path("gone")), 10, "unpin")

    def dying() -> int:
        with open(os.path.join(mirror.cgroup_root, "cgroup.stat"), encoding="ascii") as f:
            return int(dict(line.split() for line in f)["nr_dying_descendants"])

    wait_for(lambda: dying() == 0, 10, "the removed cgroup to be freed")


def test_verify_in_sync_exits_zero(mirror: Mirror) -> None:
    """After a pass, verify exits 0 and says so, in text and JSON."""
    os.makedirs(mirror.cg("jobs/a"))
    mirror.cli("run", "--once", check=True)
    text = mirror.cli("verify")
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.strip().splitlines()[-1].startswith("in sync: 3 cgroups, 3 stat files")
    doc = json.loads(mirror.cli("verify", "--json").stdout)
    assert doc["in_sync"] is True and doc["drift"] == {} and doc["cgroups"] == 3


def break_mirror(mirror: Mirror) -> dict[str, int]:
    """Missing, stale and wrong-cgroup drift, made by hand with the daemon stopped."""
    for rel in ("jobs/a", "jobs/b", "jobs/c"):
        os.makedirs(mirror.cg(rel))
    mirror.cli("run", "--once", check=True)
    os.unlink(mirror.stat_path("jobs/c"))  # missing
    os.mkdir(os.path.join(mirror.bpffs, "cgroup", "ghost"))  # stale
    a_pin, b_pin = mirror.stat_path("jobs/a"), mirror.stat_path("jobs/b")
    os.unlink(a_pin)  # wrong cgroup: jobs/a's file serves jobs/b
    fd = libbpf.obj_get(b_pin)
    try:
        libbpf.obj_pin(fd, a_pin)
    finally:
        os.close(fd)
    return {"a": os.stat(mirror.cg("jobs/a")).st_ino, "b": os.stat(mirror.cg("jobs/b")).st_ino,
            "c": os.stat(mirror.cg("jobs/c")).st_ino}


def test_verify_lists_exact_drift_text(mirror: Mirror) -> None:
    """verify exits 1 and names each drifted path with its reason."""
    ids = break_mirror(mirror)
    res = mirror.cli("verify")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert f"missing        jobs/c/hist_oncpu (cgroup {ids['c']})" in lines
    assert "stale          ghost" in lines
    assert f"wrong_cgroup   jobs/a/hist_oncpu (serves cgroup {ids['b']}, expected {ids['a']})" in lines
    assert lines[-1].startswith("DRIFT: 3 entries")


def test_verify_lists_exact_drift_json(mirror: Mirror) -> None:
    """The same drift as JSON, machine-readable."""
    ids = break_mirror(mirror)
    res = mirror.cli("verify", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["in_sync"] is False
    assert doc["drift"]["missing"] == [{"path": "jobs/c/hist_oncpu", "kind": "file", "expected_cgroup_id": ids["c"]}]
    assert doc["drift"]["stale"] == [{"path": "ghost", "kind": "entry"}]
    assert doc["drift"]["wrong_cgroup"] == [{"path": "jobs/a/hist_oncpu", "kind": "file",
                                            "expected_cgroup_id": ids["a"], "actual_cgroup_id": ids["b"]}]


def test_daemon_repairs_hand_made_drift(mirror: Mirror) -> None:
    """Starting the daemon on a broken mirror repairs it in its first pass."""
    break_mirror(mirror)
    mirror.start()
    assert mirror.in_sync()


def test_collector_missing_is_drift(mirror: Mirror) -> None:
    """Without the collector pinned, files would show zeros forever: verify says so."""
    mirror.cli("run", "--once", check=True)
    os.unlink(os.path.join(mirror.bpffs, "bpffs-sync", "hist_oncpu", "collector"))
    res = mirror.cli("verify")
    assert res.returncode == 1
    assert "no collector link pinned" in res.stdout


def test_cgroup_named_like_stat_file(mirror: Mirror) -> None:
    """A cgroup called hist_oncpu: the parent's stat file wins; reported as a conflict, not drift."""
    os.makedirs(mirror.cg("jobs/hist_oncpu/inner"))
    mirror.start()
    with open(mirror.stat_path("jobs"), encoding="utf-8") as f:
        assert f.read().startswith("cgroup_id: ")
    res = mirror.cli("verify")
    assert res.returncode == 0, res.stdout
    assert "conflict       jobs/hist_oncpu" in res.stdout


def test_restart_adopts_collector_and_mirror(mirror: Mirror) -> None:
    """SIGTERM leaves everything in place; a restart keeps the stats map (counts survive)."""
    os.mkdir(mirror.cg("keep"))
    mirror.start()
    before = mirror.status()
    assert mirror.stop() == 0
    assert os.path.exists(mirror.stat_path("keep"))
    mirror.start()
    after = mirror.status()
    progs_before = before["programs"]["hist_oncpu"]  # type: ignore[index]
    progs_after = after["programs"]["hist_oncpu"]  # type: ignore[index]
    assert progs_before["map_id"] == progs_after["map_id"]
    assert progs_before["collector_link_id"] == progs_after["collector_link_id"]
    assert mirror.proc is not None and after["daemon"]["pid"] == mirror.proc.pid  # type: ignore[index]
    assert after["daemon"]["full_passes"] >= 1 and after["daemon"]["ops_applied"] == 0  # type: ignore[index]
    assert after["mode"] == "user-space" and "kernel" not in after  # links are the kernel backends' part


def test_sigint_stops_cleanly_and_leaves_mirror(mirror: Mirror) -> None:
    """SIGINT (Ctrl-C) ends the daemon with exit 0; files stay readable with no daemon."""
    import signal

    os.mkdir(mirror.cg("stay"))
    mirror.start()
    assert mirror.stop(signal.SIGINT) == 0
    with open(mirror.stat_path("stay"), encoding="utf-8") as f:
        assert f.read().startswith("cgroup_id: ")
    assert mirror.in_sync()
