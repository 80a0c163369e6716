"""A hostile delegated user against the running daemon: mirror lag of root-made cgroups and the
daemon's RSS beside the user's chain, against the same run's lag with no hostile user.

    python -m bpffs_sync.measure.bench_hostile [--probes N] [--spacing S] [--depth D] [--name-len L] [--json]

One daemon (no periodic pass), one private bpffs and cgroup subtree. `deleg/` is chowned to
nobody, who makes a chain of `depth` cgroups with `name_len`-byte names as fast as it can, removes
it bottom-up and starts again, until stopped (measure/hostile.py). Root makes `probes` cgroups
`spacing` seconds apart in `calm/` first (no hostile user: the baseline), then in `storm/` while
the user runs. An event-driven probe process (benchprobe, mirror mode) times each one: mkdir ->
its stat file exists and a read() returned data. Printed: p50/p99/max of both phases and their
p99 ratio, how many were mirrored at all, the daemon's RSS (peak over each phase, sampled every
0.1 s), the deepest level the user reached, and how long the daemon took to exit on SIGTERM with
the user still running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bpffs_sync.measure import bench, hostile
from bpffs_sync.measure.bench_sustained import _ms, _probe
from bpffs_sync.paths import Layout
from bpffs_sync.rundir import telemetry_path
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

NOBODY = 65534
STAT = "hist_oncpu"


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _RssPeak(threading.Thread):
    """The peak RSS of a process, sampled every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kb = pid, every, 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(self.every):
            self.peak_kb = max(self.peak_kb, _rss_kb(self.pid))

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return max(self.peak_kb, _rss_kb(self.pid))


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_split(pid: int) -> tuple[float, float]:
    """(CPU seconds of the daemon's main thread -- the worker running passes --, of its other
    threads -- the inotify readers and the mountinfo thread)."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        secs = (int(fields[11]) + int(fields[12])) / _TICKS
        if int(tid) == pid:
            main += secs
        else:
            other += secs
    return main, other


def _depth_below(top: str) -> int:
    """How deep the chain below top is now (by chdir in a child: never a long path)."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        depth = 0
        try:
            os.chdir(top)
            while True:
                with os.scandir(b".") as it:
                    sub = next((e.name for e in it if e.is_dir(follow_symlinks=False)), None)
                if sub is None:
                    break
                os.chdir(sub)
                depth += 1
        except OSError:
            pass
        finally:
            os.write(wr, str(depth).encode())
            os._exit(0)
    os.close(wr)
    out = os.read(rd, 32)
    os.close(rd)
    os.waitpid(pid, 0)
    return int(out or b"0")


def _telemetry(layout: Layout, tmp: str) -> dict[str, Any]:
    try:
        with open(telemetry_path(layout.bpffs, tmp), encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except (OSError, ValueError):
        return {}


def _phase(layout: Layout, tmp: str, group: str, *, probes: int, spacing: float, daemon_pid: int) -> dict[str, Any]:
    parent = os.path.join(layout.cgroup_root, group)
    os.mkdir(parent)
    wait_until(lambda: os.path.exists(layout.mirror_path((group, STAT))), 120, f"{group} mirrored")
    out = os.path.join(tmp, f"{group}.json")
    probe = _probe("mirror", layout.mirror_path((group,)), probes, out, max(30.0, spacing * 4))
    rss = _RssPeak(daemon_pid)
    rss.start()
    cpu_before, started = _cpu_split(daemon_pid), time.monotonic()
    overflows = _telemetry(layout, tmp).get("inotify_overflows", 0)
    made: dict[str, float] = {}
    for i in range(probes):
        name = f"p{i}"
        os.mkdir(os.path.join(parent, name))
        made[name] = time.monotonic()
        time.sleep(spacing)
    probe.wait(probes * spacing + 120)
    peak = rss.stop()
    cpu_after, elapsed = _cpu_split(daemon_pid), time.monotonic() - started
    with open(out, encoding="utf-8") as f:
        seen = json.load(f)
    lag = [(seen[n] - t) * 1e3 for n, t in made.items() if n in seen]
    return {"made": len(made), "mirrored": len(lag), "lag_ms": _ms(lag), "rss_peak_mb": round(peak / 1024, 1),
            "worker_cpu_share": round((cpu_after[0] - cpu_before[0]) / elapsed, 3),
            "watcher_cpu_share": round((cpu_after[1] - cpu_before[1]) / elapsed, 3),
            "inotify_overflows": _telemetry(layout, tmp).get("inotify_overflows", 0) - overflows}


def bench_hostile(probes: int = 100, spacing: float = 0.05, depth: int = 2000, name_len: int = 255) -> dict[str, Any]:
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root, \
            tempfile.TemporaryDirectory() as tmp:
        layout = Layout(mnt, root)
        deleg = os.path.join(root, "deleg")
        os.mkdir(deleg)
        os.chown(deleg, NOBODY, NOBODY)
        daemon = bench._daemon(layout, tmp)
        user = 0
        try:
            rss_start = _rss_kb(daemon.pid)
            calm = _phase(layout, tmp, "calm", probes=probes, spacing=spacing, daemon_pid=daemon.pid)
            user = hostile.spawn_chain(deleg, depth, name_len, NOBODY, loop=True)
            time.sleep(1.0)  # the user well under way
            storm = _phase(layout, tmp, "storm", probes=probes, spacing=spacing, daemon_pid=daemon.pid)
            reached = _depth_below(deleg)
            stop_at = time.monotonic()
            daemon.terminate()
            try:
                daemon.wait(60)
                sigterm_s: float | None = round(time.monotonic() - stop_at, 3)
            except subprocess.TimeoutExpired:
                sigterm_s = None
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            if user:
                hostile.stop(user)
            hostile.remove_tree(deleg)
            mirror_deleg = layout.mirror_path(("deleg",))
            if os.path.isdir(mirror_deleg):
                hostile.remove_tree(mirror_deleg, files=True)
            subprocess.run(["rm", "-rf", layout.mirror_root], check=False)
    ratio = (round(storm["lag_ms"]["p99"] / calm["lag_ms"]["p99"], 2)
             if storm["lag_ms"] and calm["lag_ms"] and calm["lag_ms"]["p99"] else None)
    return {"probes": probes, "spacing_s": spacing, "chain_depth": depth, "name_len": name_len,
            "deepest_reached": reached, "calm": calm, "storm": storm, "ratio_p99": ratio,
            "rss_start_mb": round(rss_start / 1024, 1), "sigterm_exit_s": sigterm_s}


def render(r: dict[str, Any]) -> str:
    def line(name: str, p: dict[str, Any]) -> str:
        lag = p["lag_ms"]
        return (f"  {name}: {p['mirrored']}/{p['made']} mirrored; mkdir -> file readable p50 {lag.get('p50')} ms, "
                f"p99 {lag.get('p99')} ms, max {lag.get('max')} ms; daemon RSS peak {p['rss_peak_mb']} MB; CPU: worker "
                f"{p['worker_cpu_share'] * 100:.0f} %, watcher threads {p['watcher_cpu_share'] * 100:.0f} % "
                f"of one CPU; "
                f"{p['inotify_overflows']} inotify overflows")
    return "\n".join([
        f"hostile: {r['probes']} root-made cgroups {r['spacing_s']:g} s apart, without and beside a delegated user "
        f"making a {r['chain_depth']}-deep chain of {r['name_len']}-byte names in a loop "
        f"(deepest seen {r['deepest_reached']})",
        line("no hostile user", r["calm"]),
        line("hostile user   ", r["storm"]),
        f"  p99 ratio hostile / none: {r['ratio_p99']}x; RSS at start {r['rss_start_mb']} MB; "
        f"SIGTERM -> exit {r['sigterm_exit_s']} s (user still running)",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_hostile", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--probes", type=int, default=100)
    p.add_argument("--spacing", type=float, default=0.05)
    p.add_argument("--depth", type=int, default=2000)
    p.add_argument("--name-len", type=int, default=255)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = bench_hostile(args.probes, args.spacing, args.depth, args.name_len)
    print(json.dumps(r) if args.json else render(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
