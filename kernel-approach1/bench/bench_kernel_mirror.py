"""Benchmarks of the kernel's mirror, each against a baseline measured in the same run (in the guest).

    make kernel-bench            (kernel-approach1/scripts/test.sh --bench)

- link create over N existing cgroups (the populate walk; it holds cgroup_mutex for no step, and
  its own mutex for one cgroup's entries at a time). Baseline: the user-space mirror's first full
  pass (`bpffs-sync run --once`) over the same tree, which pins one iterator per cgroup.
- mkdir/rmdir of N cgroups with a link on their root vs without one: what the mirror adds to
  each mkdir and rmdir (it runs inside them, under cgroup_mutex).
- mkdir stall: the worst mkdir latency of a concurrent mkdir loop while a link is created over N
  cgroups and while it is detached, vs the same loop's worst latency with nothing else running, and
  beside a CPU-bound process as long as the create (with two CPUs the probe runs on one, the walk
  and the busy process on the other: what the probe sees is a wait, not a shared CPU).
- read: open+read+close of a kernel-made file vs a user-space pinned iterator of the same program,
  each part timed on its own, the two files alternating so drift hits both alike.
- mkdir vs links (--links): mkdir+rmdir of one cgroup with 0, 1, 4 and 16 links covering it (each
  adds a file) and with as many links elsewhere in the hierarchy (what finding a cgroup's links
  costs), vs the same loop with no link.

Numbers under TCG (no KVM here) are slow in absolute terms; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from bpffs_sync.backends import kernel_a1
from bpffs_sync.cli import bounded
from bpffs_sync.measure import harness
from bpffs_sync.measure.harness import CGROUP2, make_tree, remove_tree, spin, timed_make
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

# With two CPUs the probe runs on CPU 1, the walk (the attaching thread) and the busy baseline on
# CPU 0, the same placement in every round. The guest runs single-threaded TCG (run-guest.sh), one
# host thread for both vCPUs, so anything running on CPU 0 stretches the probe's wall time anyway:
# that is what the busy baseline shows. Whether a mkdir *waited* is told by the probe thread's
# voluntary context switches across the mkdir (a mutex wait sleeps; a shared CPU does not).
PROBE_CPU = 1 if len(os.sched_getaffinity(0)) >= 2 and 1 in os.sched_getaffinity(0) else None
WALK_CPU = 0


class MkdirProbe:
    """What one stall probe saw: mkdir latencies (the mkdir alone timed, rmdir after), the worst,
    and the mkdirs that blocked in the kernel (harness.stall_probe's "thread" runner)."""

    def __init__(self, samples: list[harness.Sample]) -> None:
        self.samples = [s.latency_ns / 1e9 for s in samples]
        self.worst = max(self.samples, default=0.0)
        self.slept = [s.latency_ns / 1e9 for s in samples if s.slept]  # latencies of the mkdirs that blocked


def probe_while(root: str, action: Callable[[], object]) -> MkdirProbe:
    """The probe, stopped, that ran mkdirs during action(): a thread of this process on PROBE_CPU."""
    with harness.stall_probe(root, "thread", pair=False, cpu=PROBE_CPU) as samples:
        time.sleep(0.05)
        action()
        time.sleep(0.05)
    return MkdirProbe(samples)


STALL_ROUNDS = 3
STALL_LABELS = ("idle", "busy", "during_attach", "during_detach")


def stall_rounds(actions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """For each action label, over STALL_ROUNDS interleaved rounds: mkdir_worst_<label>_ms, the
    median of the rounds' worst mkdir (and _max_ms, the worst round); mkdir_slept_<label>, how many
    mkdirs blocked in all rounds, of mkdir_count_<label>, and the worst of those in
    mkdir_slept_worst_<label>_ms. The caller runs pinned to WALK_CPU."""
    worst: dict[str, list[float]] = {}
    slept: dict[str, list[float]] = {}
    count: dict[str, int] = {}
    allowed = os.sched_getaffinity(0)
    if PROBE_CPU is not None:
        os.sched_setaffinity(0, {WALK_CPU})  # the spin child inherits it
    try:
        for _ in range(STALL_ROUNDS):
            for label, action in actions.items():
                probe = probe_while(CGROUP2, action)
                worst.setdefault(label, []).append(probe.worst * 1e3)
                slept.setdefault(label, []).extend(t * 1e3 for t in probe.slept)
                count[label] = count.get(label, 0) + len(probe.samples)
    finally:
        os.sched_setaffinity(0, allowed)
    out = {"stall_probe_pinned": float(PROBE_CPU is not None)}
    for label, values in worst.items():
        out[f"mkdir_worst_{label}_ms"] = statistics.median(values)
        out[f"mkdir_worst_{label}_max_ms"] = max(values)
        out[f"mkdir_count_{label}"] = count[label]
        out[f"mkdir_slept_{label}"] = len(slept[label])
        out[f"mkdir_slept_worst_{label}_ms"] = max(slept[label], default=0.0)
    return out


READ_PARTS = ("open", "run", "close")  # run: the first read(2), which runs the program


def read_parts(paths: dict[str, str], reads: int) -> dict[str, float]:
    """Mean us of open(2), the first read(2) and close(2) of each file in paths ({label: path}) as
    <label>_<part>_us, their sum as <label>_read_us; rounds alternate between the files."""
    took = {(label, part): 0.0 for label in paths for part in READ_PARTS}
    clock = time.perf_counter
    for _ in range(reads):
        for label, path in paths.items():
            t0 = clock()
            fd = os.open(path, os.O_RDONLY)
            t1 = clock()
            os.read(fd, 32768)
            t2 = clock()
            os.close(fd)
            t3 = clock()
            took[label, "open"] += t1 - t0
            took[label, "run"] += t2 - t1
            took[label, "close"] += t3 - t2
    out = {f"{label}_{part}_us": total / reads * 1e6 for (label, part), total in took.items()}
    for label in paths:
        out[f"{label}_read_us"] = sum(out[f"{label}_{part}_us"] for part in READ_PARTS)
    return out


EXE = os.path.join(os.path.dirname(sys.executable), "bpffs-sync")


def run_once(bpffs: str, cgroup_root: str) -> float:
    """Wall time of one user-space full pass (`bpffs-sync run --once`) mirroring cgroup_root."""
    start = time.perf_counter()
    subprocess.run([EXE, "run", "--user-space", "--once", "--bpffs", bpffs, "--cgroup-root", cgroup_root],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def clean(bpffs: str, cgroup_root: str) -> None:
    subprocess.run(
        [EXE, "clean", "--user-space", "--bpffs", bpffs, "--cgroup-root", cgroup_root], check=False, capture_output=True
    )


def bench(n: int, reads: int) -> dict[str, float]:
    spec = lookup("hist_oncpu")
    out: dict[str, float] = {"cgroups": n}
    fs = mount_bpffs("cgroup_mirror")
    userspace_fs = mount_bpffs()
    root = make_cgroup_root("cgstat-bench")
    try:
        with kernel_a1.KernelMirror(Layout(fs, CGROUP2), spec) as km:
            # mkdir/rmdir without a link (baseline), then with one on the root
            made, out["mkdir_plain_s"] = timed_make(root, n)
            out["rmdir_plain_s"] = remove_tree(made)
            fd = km.attach(root)
            made, out["mkdir_mirrored_s"] = timed_make(root, n)
            out["rmdir_mirrored_s"] = remove_tree(made)
            os.close(fd)
            kernel_a1.detach_all()

            # link create over n cgroups (cgroup_mutex hold) vs the user-space first pass
            made = make_tree(root, n)
            fds: list[int] = []
            start = time.perf_counter()
            fds.append(km.attach(root))
            out["link_create_s"] = time.perf_counter() - start
            kernel_file = os.path.join(fs, "cgroup", os.path.relpath(made[-1], CGROUP2), "hist_oncpu")

            # The user-space first pass, minus the same command over an empty root (process
            # start-up and program load, which dominate under TCG): what the walk itself costs.
            empty = os.path.join(root, "empty")
            os.mkdir(empty)
            out["userspace_empty_pass_s"] = run_once(userspace_fs, empty)
            clean(userspace_fs, empty)
            os.rmdir(empty)
            out["userspace_first_pass_s"] = run_once(userspace_fs, root)
            rel = os.path.relpath(made[-1], root)
            pinned = os.path.join(userspace_fs, "cgroup", rel, "hist_oncpu")
            out.update(read_parts({"kernel": kernel_file, "userspace": pinned}, reads))
            clean(userspace_fs, root)
            kernel_a1.detach_all()
            os.close(fds.pop())

            # mkdir stall while a link is created over n cgroups (and detached), against the same
            # probe idle and beside a CPU-bound process; STALL_ROUNDS interleaved rounds, the median
            # of each round's worst (one round's worst under TCG is noise as often as not)
            actions: dict[str, Callable[[], object]] = {
                "idle": lambda: time.sleep(out["link_create_s"]),
                "busy": lambda: spin(out["link_create_s"]),
                "during_attach": lambda: fds.append(km.attach(root)),
                "during_detach": kernel_a1.detach_all,
            }
            out.update(stall_rounds(actions))
            for fd in fds:
                os.close(fd)
            remove_tree(made)
    finally:
        kernel_a1.detach_all()
        remove_cgroup_tree(root)
        umount_bpffs(fs)
        umount_bpffs(userspace_fs)
    return out


LINK_COUNTS = (0, 1, 4, 16)


def mkdir_rmdir_us(parent: str, rounds: int) -> float:
    """Mean wall time of one mkdir+rmdir of a cgroup under parent, in us."""
    path = os.path.join(parent, "m.scope")
    start = time.perf_counter()
    for _ in range(rounds):
        os.mkdir(path)
        os.rmdir(path)
    return (time.perf_counter() - start) / rounds * 1e6


def bench_links(rounds: int, repeats: int = 3) -> dict[str, float]:
    """mkdir+rmdir cost under k covering links and with k links elsewhere, k in LINK_COUNTS: the
    median of `repeats` sweeps, the configurations interleaved so drift hits all of them alike."""
    samples: dict[str, list[float]] = {}
    fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("cgstat-links")
    try:
        target = os.path.join(root, "target")
        os.mkdir(target)
        elsewhere = [os.path.join(root, f"other{i}") for i in range(max(LINK_COUNTS))]
        for path in elsewhere:
            os.mkdir(path)
        with kernel_a1.KernelMirror(Layout(fs, CGROUP2), lookup("hist_oncpu")) as km:
            mkdir_rmdir_us(target, rounds)  # warm-up
            for _ in range(repeats):
                for k in LINK_COUNTS:
                    for where, roots in (("covering", [target] * k), ("elsewhere", elsewhere[:k])):
                        fds = [km.attach(r, f"stat{i}") for i, r in enumerate(roots)]
                        samples.setdefault(f"{where}_{k}_us", []).append(mkdir_rmdir_us(target, rounds))
                        kernel_a1.detach_all()
                        for fd in fds:
                            os.close(fd)
    finally:
        kernel_a1.detach_all()
        remove_cgroup_tree(root)
        umount_bpffs(fs)
    out: dict[str, float] = {"rounds": rounds, "repeats": repeats}
    out.update({key: statistics.median(values) for key, values in samples.items()})
    out["covering_0_us"] = statistics.median(samples["covering_0_us"] + samples["elsewhere_0_us"])
    return out


def report_links(r: dict[str, float]) -> str:
    base = r["covering_0_us"]
    lines = [
        f"mkdir+rmdir of one cgroup, median of {int(r['repeats'])} x {int(r['rounds'])} rounds, "
        f"vs no link ({base:.1f} us):"
    ]
    for k in LINK_COUNTS[1:]:
        cov, els = r[f"covering_{k}_us"], r[f"elsewhere_{k}_us"]
        lines.append(
            f"  {k:2d} links: covering it {cov:.1f} us ({cov / base:.2f}x), elsewhere {els:.1f} us ({els / base:.2f}x)"
        )
    return "\n".join(lines)


def report(r: dict[str, float]) -> str:
    n = int(r["cgroups"])
    walk = r["userspace_first_pass_s"] - r["userspace_empty_pass_s"]
    lines = [
        f"cgroups: {n}",
        f"  link create: {r['link_create_s']:.3f} s = "
        f"{r['link_create_s'] / n * 1e6:.1f} us/cgroup; user-space first pass {r['userspace_first_pass_s']:.3f} s, "
        f"{walk / n * 1e6:.1f} us/cgroup without its {r['userspace_empty_pass_s']:.1f} s start-up "
        f"(kernel/user-space {r['link_create_s'] / walk:.3f}x)",
        f"  mkdir  with link {r['mkdir_mirrored_s'] / n * 1e6:.1f} us vs without {r['mkdir_plain_s'] / n * 1e6:.1f} us "
        f"per cgroup ({r['mkdir_mirrored_s'] / r['mkdir_plain_s']:.2f}x)",
        f"  rmdir  with link {r['rmdir_mirrored_s'] / n * 1e6:.1f} us vs without {r['rmdir_plain_s'] / n * 1e6:.1f} us "
        f"per cgroup ({r['rmdir_mirrored_s'] / r['rmdir_plain_s']:.2f}x)",
        f"  mkdir worst latency (median of {STALL_ROUNDS} rounds' worst) during link create "
        f"{r['mkdir_worst_during_attach_ms']:.1f} ms vs idle {r['mkdir_worst_idle_ms']:.1f} ms "
        f"= {r['mkdir_worst_during_attach_ms'] / r['mkdir_worst_idle_ms']:.2f}x; "
        f"during detach {r['mkdir_worst_during_detach_ms']:.1f} ms "
        f"({r['mkdir_worst_during_detach_ms'] / r['mkdir_worst_idle_ms']:.2f}x); "
        f"during a CPU-bound process as long as the create {r['mkdir_worst_busy_ms']:.1f} ms "
        f"({r['mkdir_worst_busy_ms'] / r['mkdir_worst_idle_ms']:.2f}x)",
        "  mkdirs that blocked in the kernel (slept), of all, worst: "
        + "; ".join(f"{label} {int(r[f'mkdir_slept_{label}'])} of {int(r[f'mkdir_count_{label}'])}, "
                    f"{r[f'mkdir_slept_worst_{label}_ms']:.1f} ms" for label in STALL_LABELS),
        f"  read kernel file {r['kernel_read_us']:.1f} us vs user-space pinned iterator "
        f"{r['userspace_read_us']:.1f} us "
        f"({r['kernel_read_us'] / r['userspace_read_us']:.2f}x); "
        + ", ".join(f"{part} {r[f'kernel_{part}_us']:.1f} vs {r[f'userspace_{part}_us']:.1f}"
                    for part in ("open", "run", "close")),
    ]
    return "\n".join(lines)


_positive = bounded(int, 1, 1_000_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=_positive, action="append", help="cgroups (repeatable; default 1000 and 10000)")
    ap.add_argument("--reads", type=_positive, default=2000, help="reads of each file (default 2000)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--links", type=_positive, metavar="ROUNDS",
                    help="only mkdir vs 0/1/4/16 links, ROUNDS mkdirs each")
    args = ap.parse_args()
    kernel_a1.require_supported()
    if args.links:
        r = bench_links(args.links)
        print(json.dumps(r, indent=2) if args.json else report_links(r))
        return 0
    results = [bench(n, args.reads) for n in (args.count or [1000, 10000])]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(report(r) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
