"""The kernel benches' harness, one copy: kernel-approach1/bench/bench_kernel_mirror.py,
kernel-approach2/bench/bench_a2.py, the report's guest rows (report/inguest.py) and its host rows
(report/measures.py) build their cgroup trees, read the slab, spin a CPU and probe mkdir stalls here.

- make_tree / remove_tree: n cgroups as about sqrt n parents (`p<i>.slice`) of about sqrt n children
  (`c<j>.scope`), parents first; removed in reverse. tree_paths: their paths, nothing made.
- slab_bytes: `Slab:` of /proc/meminfo (reclaimable + unreclaimable), in bytes.
- spin: a CPU-bound process for some seconds (the busy baseline of a stall: under TCG any busy vCPU
  slows the other's mkdir; this separates that from a lock wait).
- stall_probe: mkdir (or mkdir+rmdir) of `<top>/probe` in a loop while the body of a `with` runs
  elsewhere; each operation a Sample (start, latency, whether it slept: a voluntary context switch
  across it, which a mutex wait makes and a shared CPU does not). Three runners, the same loop and
  the same samples: "thread" (in this process: its thread's switches), "process" (a Python child:
  warmed up before the body starts) and "readloop" (bench/report/readloop.c's C loop, `mkdirts`: the
  mkdir alone timed, starts by CLOCK_MONOTONIC, no switch count). Summary.of() and overlapping() read
  them.

Runs on any cgroup v2 hierarchy (tests/test_harness.py runs each piece on the host's).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

CGROUP2 = "/sys/fs/cgroup"
PROBE_NAME = "probe"  # the directory a stall probe makes and removes in its top directory
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- trees, slab, a busy CPU ---------------------------------------------------------------------


def tree_paths(root: str, n: int) -> list[str]:
    """The paths of make_tree's n cgroups (about sqrt n parents of about sqrt n children), parents
    first, without making them."""
    width = max(1, int(n ** 0.5))
    out: list[str] = []
    i = 0
    while len(out) < n:
        parent = os.path.join(root, f"p{i}.slice")
        out.append(parent)
        out += [os.path.join(parent, f"c{j}.scope") for j in range(min(width, n - len(out)))]
        i += 1
    return out


def make_tree(root: str, n: int) -> list[str]:
    """n cgroups as about sqrt n parents of about sqrt n children; returns them parents first."""
    made = tree_paths(root, n)
    for path in made:
        os.mkdir(path)
    return made


def remove_tree(made: list[str]) -> float:
    """rmdir what make_tree made, children first; the seconds it took."""
    start = time.perf_counter()
    for path in reversed(made):
        os.rmdir(path)
    return time.perf_counter() - start


def timed_make(root: str, n: int) -> tuple[list[str], float]:
    """make_tree and the seconds it took."""
    start = time.perf_counter()
    made = make_tree(root, n)
    return made, time.perf_counter() - start


def slab_bytes() -> int:
    """Slab (reclaimable + unreclaimable) from /proc/meminfo, in bytes."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Slab line in /proc/meminfo")


def spin(seconds: float) -> None:
    """A CPU-bound process for `seconds`."""
    subprocess.run([sys.executable, "-c", f"import time\ne = time.monotonic() + {seconds}\n"
                    "while time.monotonic() < e: pass"], check=True)


def on_cpu(cpu: int) -> Callable[[], None]:
    """A function pinning the calling process or thread to cpu (a Popen preexec_fn), when it exists."""
    def pin() -> None:
        if (os.cpu_count() or 1) > cpu:
            os.sched_setaffinity(0, {cpu})
    return pin


# --- the stall probe -----------------------------------------------------------------------------


class Sample(NamedTuple):
    start_ns: int  # perf_counter_ns (thread, process) or CLOCK_MONOTONIC (readloop): both CLOCK_MONOTONIC
    latency_ns: int
    slept: bool  # a voluntary context switch across it (readloop: not counted, False)


@dataclass(frozen=True, slots=True)
class Summary:
    worst_ns: int  # 0 without samples
    count: int
    slept: int
    slept_worst_ns: int

    @classmethod
    def of(cls, samples: list[Sample]) -> Summary:
        slept = [s.latency_ns for s in samples if s.slept]
        return cls(max((s.latency_ns for s in samples), default=0), len(samples), len(slept), max(slept, default=0))


def overlapping(samples: list[Sample], window: tuple[int, int]) -> list[int]:
    """Latencies of the samples in flight at some point of window (start and end, the samples' clock)."""
    a, b = window
    return [s.latency_ns for s in samples if s.start_ns < b and s.start_ns + s.latency_ns > a]


def mkdir_loop(top: str, stopped: Callable[[], bool], samples: list[Sample], *, pair: bool, thread: bool,
               warmup: int = 0, ready: Callable[[], None] | None = None) -> None:
    """mkdir (pair: mkdir+rmdir) of top/probe timed, until stopped() and at least `warmup` done; the
    first `warmup` are not kept, ready() is called after them. Voluntary switches are the thread's
    (thread) or the process's."""
    who = resource.RUSAGE_THREAD if thread else resource.RUSAGE_SELF
    path = os.path.join(top, PROBE_NAME)
    n = 0
    while not stopped() or n < warmup:
        switches = resource.getrusage(who).ru_nvcsw
        start = time.perf_counter_ns()
        os.mkdir(path)
        if pair:
            os.rmdir(path)
        took = time.perf_counter_ns() - start
        slept = resource.getrusage(who).ru_nvcsw != switches
        if not pair:
            os.rmdir(path)
        n += 1
        if n == warmup and ready is not None:
            ready()
        if n > warmup:
            samples.append(Sample(start, took, slept))


def _process_main(argv: list[str]) -> None:
    """The "process" runner's child: top, stop file, pair (0/1), warmup; "ready" once warmed up, then
    one line per sample."""
    top, stop, pair, warmup = argv[0], argv[1], argv[2] == "1", int(argv[3])
    samples: list[Sample] = []
    mkdir_loop(top, lambda: os.path.exists(stop), samples, pair=pair, thread=False, warmup=warmup,
               ready=lambda: print("ready", flush=True))
    sys.stdout.write("".join(f"{s.start_ns} {s.latency_ns} {int(s.slept)}\n" for s in samples))


_CHILD = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom bpffs_sync.measure.harness import _process_main\n"
          "_process_main(sys.argv[2:])\n")


@contextlib.contextmanager
def stall_probe(top: str, how: Literal["thread", "process", "readloop"], *, pair: bool = True, warmup: int = 0,
                cpu: int | None = None, readloop: str = "", count: int = 10_000_000,
                settle: float | None = None) -> Iterator[list[Sample]]:
    """The probe running in top while the body runs; the yielded list holds its samples once the
    `with` is left (thread: as they come). The probe has started before the body: thread at once,
    process after `warmup` operations, readloop once its probe directory appears and 0.1 s more (or,
    given settle, after settle seconds, whether it has started or not). cpu pins the probe (None:
    where the scheduler puts it). readloop: the binary (how="readloop"), `count` its bound on
    operations; it times the mkdir alone whatever `pair` says, and ignores warmup."""
    samples: list[Sample] = []
    if how == "thread":
        stop = threading.Event()

        def run() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # this thread only
            mkdir_loop(top, stop.is_set, samples, pair=pair, thread=True, warmup=warmup)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield samples
        finally:
            stop.set()
            worker.join()
        return
    with tempfile.TemporaryDirectory(prefix="bpffs-sync-probe-") as tmp:
        stopfile = os.path.join(tmp, "stop")  # the probe runs until it exists
        if how == "process":
            argv = [sys.executable, "-c", _CHILD, _PACKAGE_PARENT, top, stopfile, str(int(pair)), str(warmup)]
        else:
            argv = [readloop, "mkdirts", str(count), top, stopfile]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                preexec_fn=None if cpu is None else on_cpu(cpu))  # noqa: PLW1509 (affinity only)
        try:
            assert proc.stdout is not None
            if how == "process":
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("the mkdir probe did not start")
            elif settle is not None:
                time.sleep(settle)
            else:
                deadline = time.monotonic() + 30
                while not os.path.exists(os.path.join(top, PROBE_NAME)) and time.monotonic() < deadline:
                    time.sleep(0.0005)
                time.sleep(0.1)
            yield samples
        finally:
            open(stopfile, "w").close()
            out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the mkdir probe failed (exit {proc.returncode})")
        lines = out.splitlines()
        if how == "process":
            samples.extend(Sample(int(a), int(b), c == "1") for a, b, c in (line.split() for line in lines))
        else:
            samples.extend(Sample(int(a), int(b), False) for a, b in (line.split() for line in lines[1:]))
