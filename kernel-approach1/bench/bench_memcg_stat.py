"""memcg_stat's file (the memcg kfuncs through a cgroup/stat.s link) vs memory.stat, in the patched guest.

    .venv/bin/python kernel-approach1/bench/bench_memcg_stat.py [--reads N] [--block B] [--repeats R] [--json]

One cgroup with the memory controller, holding a stopped process with anon and shmem memory
(as kernel-approach1/tests/test_memcg_stat.py makes it). Per read, timed on its own:
  (a) memcg_stat   open + read to EOF + close of the stat's mirror file (the link made by
                   bpffs-sync's loader: kernel_a1.KernelMirror, which loads bpf/memcg_stat's
                   SEC("cgroup/stat.s") build as sleepable BPF_PROG_TYPE_CGROUP_STAT);
  (b) memory.stat  open + read to EOF + close of the cgroup's memory.stat, parsed into a dict of
                   exactly the keys memcg_stat prints (the same information out: name -> int);
  (a') memcg_stat+parse  (a), parsed into the same dict: the like-for-like cost of the numbers.
The three alternate in blocks of B reads (the order rotating each block, so drift and cache state
hit them alike), after a warm-up; R repeats of N reads each. Every figure is the median over the
repeats of each repeat's median ns per read, with the repeats' min..max and n (reads per method).
The headline is b/a; b/a' is printed beside it.

Upstream's cover letter for the memcg kfuncs claims the kfunc route is about 14x faster than
reading memory.stat; this bench measures this tree's route (a text file made by a sleepable BPF
program per read, under TCG when run in the guest: read the ratio, not the nanoseconds).

Needs the kernel-approach1 series (with sleepable cgroup/stat.s) and the memcg kfuncs (Linux 7.0+):
without either it says which in one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.cli import bounded
from bpffs_sync.errors import SyncError
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup, require_kfuncs
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

CGROUP2 = "/sys/fs/cgroup"
NAME = "memcg_stat"
ANON_MIB = 24
SHMEM_MIB = 8
WARMUP = 50
UPSTREAM_CLAIM = 14.0  # the memcg kfunc series' cover letter: kfuncs vs reading memory.stat

# The process whose memory the cgroup holds: anon and shmem pages touched, then stopped (SIGSTOP),
# so the counters hold still and nothing it does costs CPU during the reads.
HOG = f"""
import mmap, os, signal, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
anon = mmap.mmap(-1, {ANON_MIB} << 20)
for off in range(0, len(anon), 4096):
    anon[off] = 1
name = "/dev/shm/memcg-stat-bench-%d" % os.getpid()
fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o600)
os.ftruncate(fd, {SHMEM_MIB} << 20)
shm = mmap.mmap(fd, {SHMEM_MIB} << 20)
for off in range(0, len(shm), 4096):
    shm[off] = 1
os.unlink(name)
sys.stdout.write("ready\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


class BenchError(Exception):
    """The set-up did not give what the bench measures (one line)."""


def read_all(path: str) -> bytes:
    """open + read(2) until EOF + close: the same syscalls for every file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def parse_all(data: bytes) -> dict[str, int]:
    """memcg_stat's text (`name value` lines, every one wanted) as a dict."""
    out = {}
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        out[key.decode()] = int(value)
    return out


def parse_keys(data: bytes, wanted: dict[bytes, str]) -> dict[str, int]:
    """memory.stat's text, only the lines named in `wanted` (bytes -> the dict's key)."""
    out = {}
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        name = wanted.get(key)
        if name is not None:
            out[name] = int(value)
    return out


def enable_memory(*dirs: str) -> None:
    for d in dirs:
        with open(os.path.join(d, "cgroup.subtree_control"), "w", encoding="ascii") as f:
            f.write("+memory")


@contextlib.contextmanager
def hog_in(cgroup: str) -> Iterator[int]:
    """The hog, started in `cgroup`, its memory touched and the process stopped; killed after."""
    proc = subprocess.Popen([sys.executable, "-c", HOG, cgroup], stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout is None or proc.stdout.readline() != "ready\n":
            raise BenchError(f"the memory hog did not start (exit {proc.poll()})")
        os.waitid(os.P_PID, proc.pid, os.WSTOPPED)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True, slots=True)
class Cell:
    """One figure: the median over repeats of each repeat's median, the repeats' min and max, and
    n (reads, all repeats together)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, per_repeat: list[float], n: int) -> Cell:
        return cls(statistics.median(per_repeat), min(per_repeat), max(per_repeat), n)

    def text(self, unit: str, digits: int = 0) -> str:
        return f"{self.median:.{digits}f}{unit} [{self.low:.{digits}f}..{self.high:.{digits}f}] (n={self.n})"


METHODS = ("memcg_stat", "memory_stat", "memcg_stat_parse")


def measure(ops: dict[str, Callable[[], object]], reads: int, block: int, repeats: int) -> dict[str, list[list[int]]]:
    """ns of each call of each op: `repeats` lists of `reads` samples per op, the ops alternating
    in blocks of `block` calls, the order rotated every block."""
    clock = time.perf_counter_ns
    names = list(ops)
    for op in ops.values():  # warm-up: caches, the flush, page faults of the parser
        for _ in range(WARMUP):
            op()
    samples: dict[str, list[list[int]]] = {name: [] for name in names}
    for _ in range(repeats):
        this: dict[str, list[int]] = {name: [] for name in names}
        done = 0
        turn = 0
        while done < reads:
            size = min(block, reads - done)
            order = names[turn % len(names) :] + names[: turn % len(names)]
            for name in order:
                op, out = ops[name], this[name]
                for _ in range(size):
                    t0 = clock()
                    op()
                    out.append(clock() - t0)
            done += size
            turn += 1
        for name in names:
            samples[name].append(this[name])
    return samples


def summarize(samples: dict[str, list[list[int]]]) -> dict[str, Cell]:
    """ns per read of each method, and the ratios b/a and b/a', each as a Cell over the repeats."""
    medians = {m: [float(statistics.median(r)) for r in samples[m]] for m in METHODS}
    n = {m: sum(len(r) for r in samples[m]) for m in METHODS}
    out = {f"{m}_ns": Cell.of(medians[m], n[m]) for m in METHODS}
    b = medians["memory_stat"]
    out["ratio_b_over_a"] = Cell.of([x / y for x, y in zip(b, medians["memcg_stat"], strict=True)], n["memory_stat"])
    out["ratio_b_over_a_parse"] = Cell.of(
        [x / y for x, y in zip(b, medians["memcg_stat_parse"], strict=True)], n["memory_stat"]
    )
    return out


def require() -> None:
    """The kernel-approach1 series and the memcg kfuncs, or one line (KernelUnsupported)."""
    kernel_a1.require_supported()
    require_kfuncs(lookup(NAME))


def bench(reads: int, block: int, repeats: int) -> dict[str, object]:
    require()
    spec = lookup(NAME)
    fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("memcg-stat-bench")
    link = -1
    try:
        enable_memory(CGROUP2, root)
        job = os.path.join(root, "job")
        os.mkdir(job)
        with kernel_a1.KernelMirror(Layout(fs, CGROUP2), spec) as km, hog_in(job):
            link = km.attach(root, NAME)
            mirror_file = os.path.join(fs, "cgroup", os.path.relpath(job, CGROUP2), NAME)
            memory_stat = os.path.join(job, "memory.stat")
            first = parse_all(read_all(mirror_file))
            if not first or "anon" not in first:
                raise BenchError(f"{mirror_file} holds no memcg lines: {read_all(mirror_file)[:200]!r}")
            wanted = {k.encode(): k for k in first}
            stat = parse_keys(read_all(memory_stat), wanted)
            if set(stat) != set(first):
                raise BenchError(f"memory.stat lacks {sorted(set(first) - set(stat))} of memcg_stat's keys")
            ops: dict[str, Callable[[], object]] = {
                "memcg_stat": lambda: read_all(mirror_file),
                "memory_stat": lambda: parse_keys(read_all(memory_stat), wanted),
                "memcg_stat_parse": lambda: parse_all(read_all(mirror_file)),
            }
            cells = summarize(measure(ops, reads, block, repeats))
            check = {
                "keys": sorted(first),
                "values_equal_once": parse_all(read_all(mirror_file)) == stat,
                "memcg_stat_bytes": len(read_all(mirror_file)),
                "memory_stat_bytes": len(read_all(memory_stat)),
            }
    finally:
        if link >= 0:
            with contextlib.suppress(SyncError):
                libbpf.link_detach(link, NAME)
            os.close(link)
        remove_cgroup_tree(root)
        umount_bpffs(fs)
    return {
        "kernel": os.uname().release,
        "reads": reads,
        "block": block,
        "repeats": repeats,
        "upstream_claim_ratio": UPSTREAM_CLAIM,
        **check,
        **{k: {"median": c.median, "min": c.low, "max": c.high, "n": c.n} for k, c in cells.items()},
    }


def report(r: dict[str, object]) -> str:
    def cell(key: str) -> Cell:
        d = r[key]
        assert isinstance(d, dict)
        return Cell(d["median"], d["min"], d["max"], d["n"])

    keys = r["keys"]
    assert isinstance(keys, list)
    lines = [
        f"kernel {r['kernel']}: {r['repeats']} repeats x {r['reads']} reads per method, interleaved in blocks of "
        f"{r['block']}; median ns per read [min..max of the repeats' medians] (n reads)",
        f"  (a)  memcg_stat file, open+read+close        {cell('memcg_stat_ns').text(' ns')}  "
        f"({r['memcg_stat_bytes']} bytes, {len(keys)} keys)",
        f"  (b)  memory.stat, open+read+close+parse      {cell('memory_stat_ns').text(' ns')}  "
        f"({r['memory_stat_bytes']} bytes, the same {len(keys)} keys kept)",
        f"  (a') memcg_stat file, open+read+close+parse  {cell('memcg_stat_parse_ns').text(' ns')}",
        f"  b/a  = {cell('ratio_b_over_a').text('x', 2)}",
        f"  b/a' = {cell('ratio_b_over_a_parse').text('x', 2)}",
        f"  (upstream's cover letter claims ~{UPSTREAM_CLAIM:.0f}x for the kfunc route vs reading memory.stat; "
        "that route returns numbers to a BPF program, not a text file per read)",
        f"  values equal in one check read: {r['values_equal_once']} (the hog is stopped; a kernel thread's "
        "charge or a flush between the two reads can still differ)",
    ]
    return "\n".join(lines)


_positive = bounded(int, 1, 1_000_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=_positive, default=2000, help="reads per method per repeat (default 2000)")
    ap.add_argument("--block", type=_positive, default=100, help="reads per block before the next method (default 100)")
    ap.add_argument("--repeats", type=_positive, default=5, help="repeats (default 5)")
    ap.add_argument("--json", action="store_true", help="the figures as JSON")
    args = ap.parse_args()
    try:
        r = bench(args.reads, args.block, args.repeats)
    except (SyncError, BenchError, OSError) as err:
        print(f"bench_memcg_stat: error: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
