#!/usr/bin/env python3
"""What hist_oncpu's collector costs per sched_switch, by the cgroup level of the switching task.

The collector charges the task's cgroup and every ancestor (bpf/stat_common.bpf.h), so its cost
grows with the level. This loads hist_oncpu's object (its tp_btf collector attached, nothing
pinned), then runs a pipe ping-pong (two processes handing one byte back and forth: every switch
has a ping-pong task as prev) in a cgroup at v2 level 1, 5 and 30 of a private subtree, in
interleaved rounds, and reads the collector's run_time_ns and run_cnt (kernel.bpf_stats_enabled,
restored afterwards) around each run. Prints the median ns per run and its ratio to level 1, both
measured in this run. The collector sees every switch on the machine: other tasks' switches are in
the figures too, the ping-pong's (tens of thousands a second) dominate them.

Run as root from the checkout:
    .venv/bin/python bench/oncpu_depth.py [--bpf-dir DIR] [--baseline DIR] [--json]
--baseline: another build of the objects (e.g. an older commit's, built into a temp dir), measured
in the same rounds, one collector attached at a time; its ratio is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from bpffs_sync import libbpf
from bpffs_sync.preflight import default_cgroup_root
from bpffs_sync.sandbox import private_cgroup_root

LEVELS = (1, 5, 30)
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
_PINGPONG = """\
import os, time
r1, w1 = os.pipe()
r2, w2 = os.pipe()
end = time.monotonic() + {seconds}
if os.fork() == 0:
    while os.read(r1, 1) == b"x":
        os.write(w2, b"x")
    os._exit(0)
n = 0
while time.monotonic() < end:
    os.write(w1, b"x")
    os.read(r2, 1)
    n += 1
os.write(w1, b"q")
os.wait()
print(n)
"""


@dataclass(frozen=True, slots=True)
class Sample:
    build: str
    level: int
    runs: int
    run_time_ns: int
    round_trips: int

    @property
    def ns_per_run(self) -> float:
        return self.run_time_ns / self.runs if self.runs else 0.0


def prog_stats(prog_id: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program, from bpftool."""
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"], capture_output=True,
                         text=True, check=True).stdout
    doc = json.loads(out)
    return int(doc.get("run_time_ns", 0)), int(doc.get("run_cnt", 0))


@contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    with open(STATS_SYSCTL, encoding="ascii") as f:
        before = f.read().strip()
    with open(STATS_SYSCTL, "w", encoding="ascii") as f:
        f.write("1")
    try:
        yield
    finally:
        with open(STATS_SYSCTL, "w", encoding="ascii") as f:
            f.write(before)


@contextmanager
def collector(object_path: str) -> Iterator[int]:
    """hist_oncpu loaded with its tp_btf collector attached; yields the collector's prog id."""
    with libbpf.BpfObject(object_path) as obj:
        obj.program("oncpu_raw_tp").set_autoload(False)
        obj.load()
        prog = obj.program("oncpu_tp_btf")
        with prog.attach():
            yield libbpf.prog_info(prog.fd(), "oncpu_tp_btf").prog_id


def level_of(cgroup_dir: str) -> int:
    rel = os.path.relpath(cgroup_dir, default_cgroup_root())
    return 0 if rel == "." else len(rel.split(os.sep))


def chain_to(root: str, level: int) -> str:
    """The cgroup at v2 level `level` on a chain of directories below root (root itself if at it)."""
    below = level - level_of(root)
    if below < 0:
        raise SystemExit(f"oncpu_depth: error: {root} is below level {level}")
    path = os.path.join(root, *(f"l{i:02d}" for i in range(level_of(root) + 1, level + 1)))
    os.makedirs(path, exist_ok=True)
    return path


def run_at(build: str, cgroup_dir: str, level: int, seconds: float, prog_id: int) -> Sample:
    def enter() -> None:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(os.getpid()))

    time0, runs0 = prog_stats(prog_id)
    res = subprocess.run([sys.executable, "-c", _PINGPONG.format(seconds=seconds)], capture_output=True, text=True,
                         preexec_fn=enter, check=True)
    time1, runs1 = prog_stats(prog_id)
    return Sample(build, level, runs1 - runs0, time1 - time0, int(res.stdout))


def median_ns(samples: list[Sample], build: str, level: int) -> float:
    return statistics.median(s.ns_per_run for s in samples if s.build == build and s.level == level)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bpf-dir", default=os.path.join(os.path.dirname(__file__), "..", "build", "bpf"))
    p.add_argument("--baseline", metavar="DIR", help="a directory with another build of hist_oncpu.bpf.o")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one ping-pong run")
    p.add_argument("--rounds", type=int, default=5, help="runs per level and build, interleaved")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.seconds <= 0 or args.rounds < 1:
        p.error("--seconds must be > 0 and --rounds >= 1")
    builds = {"build": os.path.join(args.bpf_dir, "hist_oncpu.bpf.o")}
    if args.baseline:
        builds["baseline"] = os.path.join(args.baseline, "hist_oncpu.bpf.o")
    for obj in builds.values():
        if not os.path.isfile(obj):
            p.error(f"no {obj} (make bpf)")
    samples: list[Sample] = []
    with private_cgroup_root("bpffs-sync-bench-depth") as root, bpf_stats_enabled():
        dirs = {level: chain_to(root, level) for level in LEVELS}
        for _ in range(args.rounds):
            for build, obj in builds.items():
                with collector(obj) as prog_id:
                    samples += [run_at(build, dirs[level], level, args.seconds, prog_id) for level in LEVELS]
    median = {b: {level: median_ns(samples, b, level) for level in LEVELS} for b in builds}
    if args.json:
        print(json.dumps({"objects": {b: os.path.realpath(o) for b, o in builds.items()}, "ns_per_run": median,
                          "samples": [asdict(s) for s in samples]}, indent=2))
        return 0
    for b, obj in builds.items():
        print(f"# {b}: {os.path.realpath(obj)}")
    print(f"# hist_oncpu collector per sched_switch, median of {args.rounds} x {args.seconds:g} s per level and build")
    head = f"{'level':>5}  {'ns/run':>8}  {'x level 1':>9}  {'runs/s':>8}"
    if "baseline" in builds:
        head += f"  {'baseline':>8}  {'x baseline':>10}"
    print(head)
    for level in LEVELS:
        runs = [s.runs for s in samples if s.build == "build" and s.level == level]
        ns = median["build"][level]
        rate = statistics.median(runs) / args.seconds
        line = f"{level:>5}  {ns:>8.0f}  {ns / median['build'][LEVELS[0]]:>9.2f}  {rate:>8.0f}"
        if "baseline" in builds:
            base = median["baseline"][level]
            line += f"  {base:>8.0f}  {ns / base:>10.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
