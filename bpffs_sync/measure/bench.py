"""`bpffs-sync bench`: figures, each printed as a ratio to a baseline measured in the same run.

lag   mkdir -> stat file readable, for a burst of N mkdirs, with the daemon as a separate process.
      Baseline: mkdir -> IN_CREATE seen by another process (the floor any user-space mirror pays).
      Both are timed by event-driven probe processes (inotify on cgroupfs / on the bpffs mirror,
      which sees the pin's creation; the probe then opens and reads the file), so nothing polls.
sync  initial full pass over N cgroups from an empty mirror (programs already loaded).
      Baselines: making those N cgroups (mkdir), and the cgroupfs walk alone. Then the periodic
      pass on the unchanged tree, per cgroup: today's (both walks) vs the new one (cgroup_tree
      iterator + cached mirror), its deep flavour, and a pass after one mkdir.
sustained  `rate` mkdirs/s for `seconds` (default 1 000/s for 60 s), each cgroup removed again
      5 s later: p99 mkdir -> stat file readable vs the p99 inotify floor of the same run (goal
      <= 2x), how many were mirrored, the daemon's CPU (bench_sustained.py).
read  open+read+parse of a cgroup's hist_oncpu vs open+read+parse of cgroup-v1 memory.stat
      (what Borglet parses today, per the RFC).
hostile  root-made cgroups' lag beside a delegated user making and removing a 2 000-deep chain of
      255-byte names in a loop, vs the same run without that user; the daemon's RSS and SIGTERM ->
      exit (bench_hostile.py; `python -m bpffs_sync.measure.bench_hostile` takes its options).

Everything runs on a private bpffs and a private cgroup subtree, removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bpffs_sync.commands.demo import burn_in
from bpffs_sync.histogram import parse_stat
from bpffs_sync.loader import LoadedStat
from bpffs_sync.measure import toolchain
from bpffs_sync.mirror import cgroupfs
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup, object_path
from bpffs_sync.rundir import telemetry_path
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

MEMORY_V1_STAT = "/sys/fs/cgroup/memory/memory.stat"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _probe(mode: str, watch_dir: str, count: int, out: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "bpffs_sync.measure.benchprobe", mode, watch_dir, str(count), out],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{mode} probe failed to start")
    return proc


def _daemon(layout: Layout, run_dir: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BPFFS_SYNC_RUN_DIR": run_dir}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "--log-level", "warning", "run",
         "--bpffs", layout.bpffs, "--cgroup-root", layout.cgroup_root, "--resync-interval", "3600"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    status = telemetry_path(layout.bpffs, run_dir)

    def ready() -> bool:
        try:
            with open(status, encoding="utf-8") as f:
                return int(json.load(f).get("full_passes", 0)) >= 1
        except (OSError, ValueError):
            return False

    wait_until(lambda: ready() or proc.poll() is not None, 60, "daemon start")
    if proc.poll() is not None:
        raise RuntimeError("bench daemon exited during start-up")
    return proc


def _lag_run(layout: Layout, tmp: str, group: str, count: int, spacing: float) -> dict[str, Any]:
    """mkdir `count` cgroups under `group`, `spacing` seconds apart; lag and floor per cgroup."""
    parent = os.path.join(layout.cgroup_root, group)
    os.mkdir(parent)
    wait_until(lambda: os.path.exists(layout.mirror_path((group, "hist_oncpu"))), 10, f"{group} mirrored")
    base_out, mir_out = os.path.join(tmp, f"{group}-base.json"), os.path.join(tmp, f"{group}-mirror.json")
    base = _probe("cgroup", parent, count, base_out)
    mirror = _probe("mirror", layout.mirror_path((group,)), count, mir_out)
    made: dict[str, float] = {}
    started = time.monotonic()
    for i in range(count):
        name = f"c{i}"
        made[name] = time.monotonic()
        os.mkdir(os.path.join(parent, name))
        if spacing:
            time.sleep(spacing)
    burst_seconds = time.monotonic() - started
    base.wait(120)
    mirror.wait(120)
    with open(base_out, encoding="utf-8") as f:
        seen = json.load(f)
    with open(mir_out, encoding="utf-8") as f:
        readable = json.load(f)
    lag = [(readable[n] - t) * 1e3 for n, t in made.items() if n in readable]
    floor = [(seen[n] - t) * 1e3 for n, t in made.items() if n in seen]
    p50, p99, b50, b99 = _pct(lag, 0.5), _pct(lag, 0.99), _pct(floor, 0.5), _pct(floor, 0.99)
    return {
        "count": count, "spacing_ms": spacing * 1e3, "mirrored": len(lag), "burst_seconds": round(burst_seconds, 4),
        "lag_ms": {"p50": round(p50, 3), "p99": round(p99, 3), "max": round(max(lag), 3)},
        "inotify_floor_ms": {"p50": round(b50, 3), "p99": round(b99, 3)},
        "ratio_p50": round(p50 / b50, 1) if b50 else None,
        "ratio_p99": round(p99 / b99, 1) if b99 else None,
    }


def bench_lag(count: int) -> dict[str, Any]:
    """A burst of `count` back-to-back mkdirs, then 50 isolated mkdirs 20 ms apart."""
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root, \
            tempfile.TemporaryDirectory() as tmp:
        layout = Layout(mnt, root)
        daemon = _daemon(layout, tmp)
        try:
            burst = _lag_run(layout, tmp, "burst", count, 0.0)
            isolated = _lag_run(layout, tmp, "isolated", 50, 0.02)
        finally:
            daemon.terminate()
            daemon.wait(30)
            subprocess.run(["rm", "-rf", layout.mirror_root], check=False)
    return {"burst": burst, "isolated": isolated}


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _repeat(fn: Callable[[], object], n: int) -> dict[str, float]:
    """fn timed n times: median, min and max seconds."""
    times = sorted(_timed(fn) for _ in range(n))
    return {"median": times[len(times) // 2], "min": times[0], "max": times[-1], "n": n}


def _us(t: dict[str, float], cgroups: int) -> dict[str, float]:
    """Per-cgroup microseconds of a _repeat result."""
    return {k: (round(v / cgroups * 1e6, 2) if k != "n" else v) for k, v in t.items()}


def bench_sync(count: int, repeats: int = 5) -> dict[str, Any]:
    """The first pass over `count` cgroups, then the periodic pass on an unchanged tree: today's
    (cgroupfs walk + bpffs walk every pass: Reconciler(tree_reader=False, deep_every=1)) against
    the new one (the tree from one cgroup-iterator read, the mirror cached between deep passes),
    its deep flavour (iterator + bpffs walk) and a pass after one mkdir (records differ: the
    tree is built and diffed against the cache). Each timed `repeats` times (median, min, max)."""
    fanout = 100
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root:
        layout = Layout(mnt, root)

        def make() -> None:
            for i in range(count):
                parent = os.path.join(root, f"p{i // fanout}")
                if i % fanout == 0:
                    os.mkdir(parent)
                os.mkdir(os.path.join(parent, f"c{i}"))

        mkdir_s = _timed(make)
        walk = _repeat(lambda: cgroupfs.walk(layout, ("hist_oncpu",)), repeats)
        loaded = LoadedStat(layout, lookup("hist_oncpu"))
        try:
            c_s = _pinloop(layout, loaded)
            old = Reconciler(layout, {"hist_oncpu": loaded}, tree_reader=False, deep_every=1)
            started = time.perf_counter()
            res = old.reconcile(())
            sync_s = time.perf_counter() - started
            old.reconcile(())  # meets every pin once (bpffs.PinJudge)
            today = _repeat(lambda: old.reconcile(()), repeats)
            new = Reconciler(layout, {"hist_oncpu": loaded}, deep_every=1 << 30)
            first = new.reconcile(())  # deep: the cache is made
            noop = _repeat(lambda: new.reconcile(()), repeats)
            fast = new.reconcile(())
            deep_rec = Reconciler(layout, {"hist_oncpu": loaded}, deep_every=1)
            deep_rec.reconcile(())
            deep = _repeat(lambda: deep_rec.reconcile(()), repeats)
            n_change = [0]

            def one_change() -> None:
                n_change[0] += 1
                os.mkdir(os.path.join(root, "p0", f"new{n_change[0]}"))
                new.reconcile(())

            changed = _repeat(one_change, repeats)
            in_sync = not new.reconcile(()).plan and not deep_rec.reconcile(()).plan
            pins = res.applied.done.get("pin", 0)
            teardown_s = _timed(lambda: subprocess.run(["rm", "-rf", layout.mirror_root], check=True))
        finally:
            loaded.close()
    cgroups = count + count // fanout + 1
    return {
        "cgroups": cgroups, "pins": pins, "repeats": repeats,
        "sync_seconds": round(sync_s, 3), "per_cgroup_us": round(sync_s / cgroups * 1e6, 1),
        "today_noop_us": _us(today, cgroups), "noop_us": _us(noop, cgroups), "deep_noop_us": _us(deep, cgroups),
        "one_mkdir_us": _us(changed, cgroups), "walk_us": _us(walk, cgroups),
        "noop_is_fast_path": bool(fast.cached and fast.walked == first.walked and not fast.plan),
        "tree_source": fast.tree_source, "in_sync_after": in_sync,
        "ratio_noop_vs_today": round(noop["median"] / today["median"], 4),
        "ratio_deep_vs_today": round(deep["median"] / today["median"], 3),
        "ratio_one_mkdir_vs_today": round(changed["median"] / today["median"], 3),
        "ratio_today_vs_walk": round(today["median"] / walk["median"], 2),
        "teardown_seconds": round(teardown_s, 3),
        "baseline_mkdir_seconds": round(mkdir_s, 3), "baseline_walk_seconds": round(walk["median"], 4),
        "ratio_vs_mkdir": round(sync_s / mkdir_s, 2), "ratio_vs_walk": round(sync_s / walk["median"], 1),
        "baseline_c_seconds": round(c_s, 3), "ratio_vs_c": round(sync_s / c_s, 2),
    }


def _pinloop(layout: Layout, loaded: LoadedStat) -> float:
    """The C baseline (bench/c/pinloop.c): the same mkdir + link_create + pin + chmod per cgroup,
    from C, into a second private bpffs. Returns its seconds (the walk and syscalls only)."""
    binary = toolchain.compile_c("pinloop", "bench")
    spec = loaded.spec
    with private_bpffs() as other:
        res = subprocess.run([binary, object_path(spec), spec.name, spec.map_name(),
                              layout.private_path(spec.name, spec.map_name()), layout.cgroup_root, other],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip() or f"pinloop exited {res.returncode}")
    return float(res.stdout.split("seconds")[1])


def _parse_memory_stat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = int(value)
    return out


def _read_loop(path: str, reads: int, parse: Callable[[str], object]) -> float:
    started = time.perf_counter()
    for _ in range(reads):
        with open(path, encoding="utf-8") as f:
            parse(f.read())
    return (time.perf_counter() - started) / reads


def bench_read(reads: int) -> dict[str, Any]:
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root:
        layout = Layout(mnt, root)
        os.mkdir(os.path.join(root, "busy"))
        loaded = LoadedStat(layout, lookup("hist_oncpu"))
        try:
            Reconciler(layout, {"hist_oncpu": loaded}).reconcile(())
            burn_in(os.path.join(root, "busy"), 0.3)
            stat_file = layout.mirror_path(("busy", "hist_oncpu"))
            hist_s = _read_loop(stat_file, reads, parse_stat)
            hist_raw_s = _read_loop(stat_file, reads, len)
            with open(stat_file, encoding="utf-8") as f:
                hist_bytes = len(f.read())
            subprocess.run(["rm", "-rf", layout.mirror_root], check=True)
        finally:
            loaded.close()
    out: dict[str, Any] = {"reads": reads, "hist_oncpu_us": round(hist_s * 1e6, 2),
                           "hist_oncpu_raw_us": round(hist_raw_s * 1e6, 2), "hist_oncpu_bytes": hist_bytes}
    if os.path.exists(MEMORY_V1_STAT):
        mem_s = _read_loop(MEMORY_V1_STAT, reads, _parse_memory_stat)
        mem_raw_s = _read_loop(MEMORY_V1_STAT, reads, len)
        with open(MEMORY_V1_STAT, encoding="utf-8") as f:
            mem_bytes = len(f.read())
        out.update(memory_stat_us=round(mem_s * 1e6, 2), memory_stat_raw_us=round(mem_raw_s * 1e6, 2),
                   memory_stat_bytes=mem_bytes, ratio=round(hist_s / mem_s, 2),
                   ratio_raw=round(hist_raw_s / mem_raw_s, 2))
    else:
        out["baseline"] = f"{MEMORY_V1_STAT} absent (no cgroup-v1 memory hierarchy)"
    return out


def render(doc: dict[str, Any]) -> str:
    lines = []
    for kind, r in doc.get("lag", {}).items():
        what = f"burst of {r['count']} mkdirs ({r['burst_seconds']} s)" if kind == "burst" else \
            f"{r['count']} mkdirs {r['spacing_ms']:g} ms apart"
        lines.append(f"lag   {what}: mkdir -> file readable "
                     f"p50 {r['lag_ms']['p50']} ms, p99 {r['lag_ms']['p99']} ms; inotify floor p50 "
                     f"{r['inotify_floor_ms']['p50']} ms, p99 {r['inotify_floor_ms']['p99']} ms; "
                     f"ratio p50 {r['ratio_p50']}x, p99 {r['ratio_p99']}x")
    for r in doc.get("sync", []):
        lines.append(f"sync  {r['cgroups']} cgroups: {r['sync_seconds']} s ({r['per_cgroup_us']} us/cgroup); "
                     f"mkdir of them {r['baseline_mkdir_seconds']} s -> {r['ratio_vs_mkdir']}x; cgroupfs walk "
                     f"{r['baseline_walk_seconds']} s -> {r['ratio_vs_walk']}x; C loop of the same syscalls "
                     f"{r['baseline_c_seconds']} s -> {r['ratio_vs_c']}x")

        def us(t: dict[str, float]) -> str:
            return f"{t['median']} us/cgroup [{t['min']}..{t['max']}]"

        lines.append(f"      periodic pass, unchanged tree (median [min..max] of {r['repeats']}): today "
                     f"{us(r['today_noop_us'])}; new {us(r['noop_us'])} -> {r['ratio_noop_vs_today']}x "
                     f"(fast path: {r['noop_is_fast_path']}, tree from {r['tree_source']}); new deep "
                     f"{us(r['deep_noop_us'])} -> {r['ratio_deep_vs_today']}x; after one mkdir "
                     f"{us(r['one_mkdir_us'])} -> {r['ratio_one_mkdir_vs_today']}x; cgroupfs walk alone "
                     f"{us(r['walk_us'])}; in sync after: {r['in_sync_after']}")
    if "sustained" in doc:
        from bpffs_sync.measure.bench_sustained import render_sustained
        lines.append(render_sustained(doc["sustained"]))
    if "read" in doc:
        r = doc["read"]
        line = f"read  hist_oncpu open+read+parse {r['hist_oncpu_us']} us ({r['hist_oncpu_bytes']} B)"
        if "ratio" in r:
            line += (f"; v1 memory.stat {r['memory_stat_us']} us ({r['memory_stat_bytes']} B) -> {r['ratio']}x "
                     f"(read only: {r['hist_oncpu_raw_us']} vs {r['memory_stat_raw_us']} us -> {r['ratio_raw']}x)")
        lines.append(line)
    if "export" in doc:
        from bpffs_sync.measure.bench_export import render_export
        lines.append(render_export(doc["export"]))
    if "hostile" in doc:
        from bpffs_sync.measure.bench_hostile import render as render_hostile
        lines.append(render_hostile(doc["hostile"]))
    return "\n".join(lines)


def bench(what: list[str], counts: list[int] | None, reads: int, rate: float = 1000.0,
          seconds: float = 60.0) -> dict[str, Any]:
    if "sync" in what:  # its C baseline is compiled first: a missing gcc/libbpf is one line before any run
        toolchain.compile_c("pinloop", "bench")
    doc: dict[str, Any] = {"kernel": os.uname().release, "cpus": os.cpu_count()}
    if "lag" in what:
        doc["lag"] = bench_lag(counts[0] if counts else 1000)
    if "sync" in what:
        doc["sync"] = [bench_sync(n) for n in (counts or [1000, 10000])]
    if "sustained" in what:
        from bpffs_sync.measure.bench_sustained import bench_sustained
        doc["sustained"] = bench_sustained(rate, seconds)
    if "read" in what:
        doc["read"] = bench_read(reads)
    if "export" in what:  # bench_export.py: one scrape's CPU vs reading the cgroups' own stat files
        from bpffs_sync.measure.bench_export import bench_export
        doc["export"] = bench_export()
    if "hostile" in what:
        from bpffs_sync.measure.bench_hostile import bench_hostile
        doc["hostile"] = bench_hostile()
    return doc
