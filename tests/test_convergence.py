"""Crashes, lost events and no events at all: the mirror still converges (level-triggered)."""

from __future__ import annotations

import json
import os
import signal

from helpers import Burst, Mirror, kill9_mid_burst, wait_for


def burst(root: str, prefix: str, n: int) -> None:
    for i in range(n):
        os.makedirs(os.path.join(root, prefix, f"c{i // 20}", f"d{i}"), exist_ok=True)


def test_kill9_mid_burst_then_restart_converges_in_one_pass(mirror: Mirror) -> None:
    """kill -9 during a mkdir burst, change the tree, restart: in sync after the first pass."""
    mirror.start()
    b = Burst(mirror.cgroup_root, "b")
    made = kill9_mid_burst(mirror, b, mirror.stat_path(b.rel(0)))
    assert mirror.cli("verify").returncode == 1  # the cgroups made after the kill are not mirrored
    for i in range(0, made, 3):  # change the tree while nobody watches
        os.rmdir(mirror.cg(b.rel(i)))
    os.makedirs(mirror.cg("after/crash"))
    mirror.start(resync_interval=3600)  # returns after the first full pass
    res = mirror.cli("verify")
    assert res.returncode == 0, res.stdout


def test_inotify_overflow_still_converges(mirror: Mirror) -> None:
    """With a 16-event inotify queue and the daemon stalled (SIGSTOP) during a burst, the queue
    overflows; the overflow triggers a full resync and the mirror converges."""
    path = "/proc/sys/fs/inotify/max_queued_events"
    with open(path, encoding="ascii") as f:
        saved = f.read().strip()
    with open(path, "w", encoding="ascii") as f:
        f.write("16")
    try:
        mirror.start(resync_interval=3600)  # the daemon's inotify instance gets the small queue
    finally:
        with open(path, "w", encoding="ascii") as f:
            f.write(saved)
    for i in range(20):  # watched parents, so the burst below queues one event per mkdir
        os.makedirs(mirror.cg(f"o/c{i}"))
    wait_for(lambda: os.path.exists(mirror.stat_path("o/c19")), 10, "parents mirrored")
    assert mirror.proc is not None
    mirror.proc.send_signal(signal.SIGSTOP)
    try:
        burst(mirror.cgroup_root, "o", 400)
    finally:
        mirror.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: os.path.exists(mirror.stat_path("o/c19/d399")), 30, "last cgroup mirrored")
    wait_for(mirror.in_sync, 30, "verify to pass")
    events = [json.loads(line).get("event") for line in mirror.log().splitlines() if line.startswith("{")]
    assert "inotify_overflow" in events


def test_without_watcher_converges_within_one_period(mirror: Mirror) -> None:
    """--no-watch: only periodic passes; changes still land within one resync interval."""
    mirror.start("--no-watch", resync_interval=1.0)
    os.makedirs(mirror.cg("quiet/one"))
    waited = wait_for(lambda: os.path.exists(mirror.stat_path("quiet/one")), 5, "periodic pass")
    assert waited < 1.1 + 0.5
    os.rmdir(mirror.cg("quiet/one"))
    wait_for(lambda: not os.path.exists(mirror.stat_path("quiet/one")), 5, "periodic removal")
    assert mirror.in_sync()


def test_removed_cgroups_leave_no_watches_or_map_entries(mirror: Mirror) -> None:
    """Churn does not leak inotify watches (no IN_IGNORED on cgroupfs) or stats-map entries."""
    mirror.start()
    base = mirror.status()
    for round_ in range(3):
        for i in range(30):
            os.makedirs(mirror.cg(f"churn/r{round_}/x{i}"))
        for i in range(30):
            os.rmdir(mirror.cg(f"churn/r{round_}/x{i}"))
        os.rmdir(mirror.cg(f"churn/r{round_}"))
    os.rmdir(mirror.cg("churn"))
    wait_for(lambda: not os.path.exists(os.path.join(mirror.bpffs, "cgroup", "churn")), 10, "churn gone")
    wait_for(mirror.in_sync, 10, "in sync")
    doc = mirror.status()
    assert doc["daemon"]["watches"] == base["daemon"]["watches"]  # type: ignore[index]
    entries = doc["programs"]["hist_oncpu"]["map_entries"]  # type: ignore[index]
    assert entries <= base["programs"]["hist_oncpu"]["map_entries"] + 2  # type: ignore[index]
