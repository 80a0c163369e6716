"""`bpffs-sync bench sustained`: a steady stream of mkdirs, mkdir -> stat file readable.

`rate` mkdirs per second for `seconds` (default 1 000/s for 60 s) into one directory, each cgroup
removed again `keep` seconds after it was made (so the tree stays near rate x keep cgroups and
the daemon unpins as much as it pins). The daemon runs as its own process with no periodic pass.
Two event-driven probe processes (benchprobe) time every cgroup: when its IN_CREATE reaches
another process (the inotify floor, the least any user-space mirror pays) and when its stat file
exists and a read() returned data. The figure is p99 lag over p99 floor of the same run (goal:
at most 2x), with how many cgroups were mirrored at all and the daemon's CPU time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bpffs_sync.measure import bench
from bpffs_sync.paths import Layout
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

GOAL_P99_RATIO = 2.0
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc_pid_stat(5) fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _stream(parent: str, rate: float, seconds: float, keep: float) -> dict[str, float]:
    """mkdir parent/c<i> on a fixed schedule (i / rate after the start; no catch-up burst is
    hidden: a late mkdir is made late and timed when made). Returns name -> time made."""
    count = round(rate * seconds)
    lag = round(rate * keep)
    made: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        while (now := time.monotonic()) < due:
            time.sleep(min(due - now, 0.0005))
        made[f"c{i}"] = time.monotonic()
        os.mkdir(os.path.join(parent, f"c{i}"))
        if i >= lag:
            os.rmdir(os.path.join(parent, f"c{i - lag}"))
    return made


def _probe(mode: str, watch_dir: str, count: int, out: str, idle: float) -> subprocess.Popen[str]:
    """bench's probe, giving up after `idle` seconds without an event (a cgroup never mirrored)."""
    proc = subprocess.Popen([sys.executable, "-m", "bpffs_sync.measure.benchprobe", mode, watch_dir, str(count),
                             out, str(idle)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{mode} probe failed to start")
    return proc


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": round(bench._pct(values, 0.5), 3), "p99": round(bench._pct(values, 0.99), 3),
            "max": round(max(values), 3)}


def bench_sustained(rate: float = 1000.0, seconds: float = 60.0, keep: float = 5.0) -> dict[str, Any]:
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root, \
            tempfile.TemporaryDirectory() as tmp:
        layout = Layout(mnt, root)
        parent = os.path.join(root, "s")
        os.mkdir(parent)
        daemon = bench._daemon(layout, tmp)
        try:
            wait_until(lambda: os.path.exists(layout.mirror_path(("s", "hist_oncpu"))), 10, "s mirrored")
            count = round(rate * seconds)
            base_out, mir_out = os.path.join(tmp, "base.json"), os.path.join(tmp, "mirror.json")
            idle = max(10.0, keep * 2)
            base = _probe("cgroup", parent, count, base_out, idle)
            mirror = _probe("mirror", layout.mirror_path(("s",)), count, mir_out, idle)
            cpu_before = _cpu_seconds(daemon.pid)
            started = time.monotonic()
            made = _stream(parent, rate, seconds, keep)
            elapsed = time.monotonic() - started
            base.wait(seconds + 120)
            mirror.wait(seconds + 120)
            cpu = _cpu_seconds(daemon.pid) - cpu_before
            alive = daemon.poll() is None
        finally:
            daemon.terminate()
            daemon.wait(30)
            subprocess.run(["rm", "-rf", layout.mirror_root], check=False)
        with open(base_out, encoding="utf-8") as f:
            seen = json.load(f)
        with open(mir_out, encoding="utf-8") as f:
            readable = json.load(f)
    lag = [(readable[n] - t) * 1e3 for n, t in made.items() if n in readable]
    floor = [(seen[n] - t) * 1e3 for n, t in made.items() if n in seen]
    lag_ms, floor_ms = _ms(lag), _ms(floor)
    ratio = round(lag_ms["p99"] / floor_ms["p99"], 2) if lag_ms and floor_ms and floor_ms["p99"] else None
    return {
        "rate_per_s": rate, "seconds": seconds, "keep_seconds": keep, "made": len(made),
        "achieved_rate_per_s": round(len(made) / elapsed, 1), "mirrored": len(lag), "floor_seen": len(floor),
        "lag_ms": lag_ms, "inotify_floor_ms": floor_ms, "ratio_p99": ratio, "goal_ratio_p99": GOAL_P99_RATIO,
        "daemon_cpu_seconds": round(cpu, 3), "daemon_cpu_share": round(cpu / elapsed, 3),
        "daemon_alive": alive,
    }


def render_sustained(r: dict[str, Any]) -> str:
    lag, floor = r["lag_ms"], r["inotify_floor_ms"]
    return (f"sustained {r['made']} mkdirs at {r['achieved_rate_per_s']}/s (asked {r['rate_per_s']:g}/s, each "
            f"removed after {r['keep_seconds']:g} s): {r['mirrored']} mirrored; mkdir -> file readable "
            f"p50 {lag.get('p50')} ms, p99 {lag.get('p99')} ms, max {lag.get('max')} ms; inotify floor p50 "
            f"{floor.get('p50')} ms, p99 {floor.get('p99')} ms; ratio p99 {r['ratio_p99']}x "
            f"(goal <= {r['goal_ratio_p99']:g}x); daemon CPU {r['daemon_cpu_seconds']} s "
            f"({r['daemon_cpu_share'] * 100:.0f} % of one CPU)")
