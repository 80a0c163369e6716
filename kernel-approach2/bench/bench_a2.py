"""Approach 2 against Approach 1, side by side in one boot of the kernel that carries both series.

    kernel-approach2/scripts/test.sh --bench      (JSON in $BPFFS_SYNC_GUEST_OUT/bench_a2.json)

Each figure is measured for both approaches in the same run, on the same tree, and given as a
ratio A2/A1 (and, where it means something, against a no-link baseline of the same run):

- link_create: BPF_LINK_CREATE over N existing cgroups (1 000, 10 000; two levels). Neither walk
  holds cgroup_mutex across the subtree (A2 takes it per cgroup, A1 not at all).
- mkdir / rmdir: one cgroup made and removed in a loop below 0, 1 and 4 links covering it.
- stall: the worst latency of a mkdir+rmdir loop in another subtree (another process) while a link
  is created over 10 000 cgroups, vs the same loop's worst with nothing else running and beside a
  CPU-bound process (under TCG any busy vCPU slows the other's mkdir: the busy baseline).
- read: open+read+close of the same stat's file (A2: bpf.stat.hist_oncpu in cgroupfs, A1: the bpffs
  mirror's hist_oncpu) for the same cgroup.
- slab_per_file: (Slab in /proc/meminfo after - before) / files, over a link on 10 000 cgroups.

Numbers under TCG (no KVM here) are slow in absolute terms; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1, kernel_a2
from bpffs_sync.cli import bounded
from bpffs_sync.measure import harness
from bpffs_sync.measure.harness import CGROUP2, make_tree, remove_tree, slab_bytes, spin
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

NAME = "hist_oncpu"


class Approaches:
    """Both approaches' hist_oncpu loaded once: attach(approach, cgroup_dir, name) -> link fd."""

    def __init__(self, mirror_fs: str) -> None:
        self.mirror_fs = mirror_fs
        self.a1 = kernel_a1.KernelMirror(Layout(mirror_fs, CGROUP2), lookup(NAME))
        self.a2 = kernel_a2.CgroupfsStat(Layout(mirror_fs, CGROUP2), lookup(NAME))

    def attach(self, approach: str, cgroup_dir: str, name: str = NAME) -> int:
        return self.a1.attach(cgroup_dir, name) if approach == "a1" else self.a2.attach(cgroup_dir, name)

    def file_of(self, approach: str, cgroup_dir: str, name: str = NAME) -> str:
        if approach == "a2":
            return os.path.join(cgroup_dir, kernel_a2.file_name(name))
        return os.path.join(self.mirror_fs, "cgroup", os.path.relpath(cgroup_dir, CGROUP2), name)

    def close(self) -> None:
        self.a1.close()
        self.a2.close()


@contextmanager
def linked(ap: Approaches, approach: str, cgroup_dir: str, names: list[str]) -> Iterator[list[int]]:
    fds = [ap.attach(approach, cgroup_dir, n) for n in names]
    try:
        yield fds
    finally:
        for fd in fds:
            libbpf.link_detach(fd)
            os.close(fd)


def attach_into(fds: list[int], ap: Approaches, approach: str, cgroup_dir: str) -> None:
    fds.append(ap.attach(approach, cgroup_dir))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_link_create(ap: Approaches, root: str, sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        sub = os.path.join(root, f"create{n}")
        os.mkdir(sub)
        made = make_tree(sub, n)
        row: dict[str, Any] = {"cgroups": n + 1}
        for approach in ("a1", "a2"):
            secs = []
            for _ in range(2):
                fd, dt = timed(partial(ap.attach, approach, sub))
                libbpf.link_detach(fd)
                os.close(fd)
                secs.append(dt)
            row[f"{approach}_s"] = min(secs)
            row[f"{approach}_us_per_cgroup"] = min(secs) / (n + 1) * 1e6
        row["ratio_a2_a1"] = row["a2_s"] / row["a1_s"]
        out[str(n)] = row
        remove_tree(made)
        os.rmdir(sub)
    return out


def mkdir_rmdir_cost(top: str, rounds: int) -> tuple[float, float]:
    """Median seconds of one mkdir and one rmdir of top/x."""
    d = os.path.join(top, "x.scope")
    mk, rm = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        os.mkdir(d)
        t1 = time.perf_counter()
        os.rmdir(d)
        t2 = time.perf_counter()
        mk.append(t1 - t0)
        rm.append(t2 - t1)
    return statistics.median(mk), statistics.median(rm)


def bench_mkdir(ap: Approaches, root: str, rounds: int) -> dict[str, Any]:
    top = os.path.join(root, "mk")
    os.makedirs(os.path.join(top, "leaf"))
    leaf = os.path.join(top, "leaf")
    base_mk, base_rm = mkdir_rmdir_cost(leaf, rounds)
    out: dict[str, Any] = {"rounds": rounds, "none_mkdir_us": base_mk * 1e6, "none_rmdir_us": base_rm * 1e6}
    for nlinks in (1, 4):
        row: dict[str, Any] = {}
        for approach in ("a1", "a2"):
            with linked(ap, approach, top, [f"l{i}" for i in range(nlinks)]):
                mk, rm = mkdir_rmdir_cost(leaf, rounds)
            row[f"{approach}_mkdir_us"] = mk * 1e6
            row[f"{approach}_rmdir_us"] = rm * 1e6
            row[f"{approach}_mkdir_vs_none"] = mk / base_mk
            row[f"{approach}_rmdir_vs_none"] = rm / base_rm
        row["mkdir_ratio_a2_a1"] = row["a2_mkdir_us"] / row["a1_mkdir_us"]
        row["rmdir_ratio_a2_a1"] = row["a2_rmdir_us"] / row["a1_rmdir_us"]
        out[str(nlinks)] = row
    os.rmdir(leaf)
    os.rmdir(top)
    return out


def probe_worst(elsewhere: str, during: Callable[[], None] | None) -> tuple[float, int, int, float]:
    """(worst mkdir+rmdir latency, pairs, pairs that slept, worst of those) of a probe process in
    elsewhere while during() runs (else idle). The probe (harness.stall_probe, "process") is warmed up
    by 20 pairs before during() starts and counts the pairs that slept (a voluntary context switch
    across them): a wait on a mutex sleeps, a vCPU shared with the walk under TCG does not."""
    with harness.stall_probe(elsewhere, "process", pair=True, warmup=20) as samples:
        if during is not None:
            during()
        else:
            time.sleep(0.5)
    seen = harness.Summary.of(samples)
    return seen.worst_ns / 1e9, seen.count, seen.slept, seen.slept_worst_ns / 1e9


def bench_stall(ap: Approaches, root: str, n: int) -> dict[str, Any]:
    sub = os.path.join(root, "stall")
    elsewhere = os.path.join(root, "elsewhere")
    os.mkdir(sub)
    os.mkdir(elsewhere)
    made = make_tree(sub, n)
    out: dict[str, Any] = {"cgroups": n + 1}
    runs: dict[str, Callable[[], None] | None] = {"idle": None, "busy": partial(spin, 0.5)}
    fds: list[int] = []
    for approach in ("a1", "a2"):
        runs[approach] = partial(attach_into, fds, ap, approach, sub)
    for label, during in runs.items():
        worst, pairs, slept, slept_worst = probe_worst(elsewhere, during)
        out[f"{label}_worst_ms"] = worst * 1e3
        out[f"{label}_pairs"], out[f"{label}_slept"] = pairs, slept
        out[f"{label}_slept_worst_ms"] = slept_worst * 1e3
        for fd in fds:
            libbpf.link_detach(fd)
            os.close(fd)
        fds.clear()
    for approach in ("a1", "a2"):
        out[f"{approach}_vs_idle"] = out[f"{approach}_worst_ms"] / out["idle_worst_ms"]
        out[f"{approach}_vs_busy"] = out[f"{approach}_worst_ms"] / out["busy_worst_ms"]
    remove_tree(made)
    os.rmdir(sub)
    os.rmdir(elsewhere)
    return out


def read_cost(path: str, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            f.read()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_read(ap: Approaches, root: str, rounds: int) -> dict[str, Any]:
    leaf = os.path.join(root, "rd")
    os.mkdir(leaf)
    out: dict[str, Any] = {"rounds": rounds}
    for approach in ("a1", "a2"):
        with linked(ap, approach, leaf, [NAME]):
            path = ap.file_of(approach, leaf)
            read_cost(path, 10)
            out[f"{approach}_us"] = read_cost(path, rounds) * 1e6
    out["ratio_a2_a1"] = out["a2_us"] / out["a1_us"]
    os.rmdir(leaf)
    return out


def bench_slab(ap: Approaches, root: str, n: int) -> dict[str, Any]:
    sub = os.path.join(root, "slab")
    os.mkdir(sub)
    made = make_tree(sub, n)
    out: dict[str, Any] = {"files": n + 1}
    for approach in ("a1", "a2"):
        deltas = []
        for _ in range(2):
            subprocess.run(["sync"], check=False)
            before = slab_bytes()
            with linked(ap, approach, sub, [NAME]):
                deltas.append((slab_bytes() - before) / (n + 1))
        out[f"{approach}_bytes_per_file"] = statistics.median(deltas)
    out["ratio_a2_a1"] = out["a2_bytes_per_file"] / out["a1_bytes_per_file"] if out["a1_bytes_per_file"] else None
    remove_tree(made)
    os.rmdir(sub)
    return out


_positive = bounded(int, 1, 1_000_000)


def _sizes(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the JSON here too")
    parser.add_argument("--sizes", type=_sizes, default="1000,10000", help="link-create tree sizes")
    parser.add_argument("--rounds", type=_positive, default=300, help="mkdir/rmdir and read rounds")
    args = parser.parse_args()
    if not (kernel_a1.supported() and kernel_a2.supported()):
        print("bench_a2: error: not the kernel carrying both series", file=sys.stderr)
        return 2
    sizes: list[int] = args.sizes
    mirror_fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("bench-a2")
    ap = Approaches(mirror_fs)
    doc: dict[str, Any] = {"kernel": platform.release(), "unit_note": "TCG guest: read the ratios"}
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("link_create", partial(bench_link_create, ap, root, sizes)),
        ("mkdir", partial(bench_mkdir, ap, root, args.rounds)),
        ("stall", partial(bench_stall, ap, root, max(sizes))),
        ("read", partial(bench_read, ap, root, args.rounds)),
        ("slab_per_file", partial(bench_slab, ap, root, max(sizes))),
    ]
    try:
        for key, run in sections:
            doc[key] = run()
            write(doc, args.out)  # what is measured survives a later section's failure
    finally:
        kernel_a2.detach_all()
        kernel_a1.detach_all()
        ap.close()
        remove_cgroup_tree(root, timeout=60)
        umount_bpffs(mirror_fs)
    print(json.dumps(doc, indent=2))
    return 0


def write(doc: dict[str, Any], out: str | None) -> None:
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
