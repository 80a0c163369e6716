"""Scale, as monitoring does it (issue 22, Build item 4): a scraper reads every cgroup's stat of N
cgroups, through each route this host has, and each full scrape is timed (wall and this thread's CPU
time, which includes the kernel's work in our syscalls).

The cgroups (sets()): N = 100 and 1000 side by side (flat), plus 10 000 in the full run, and the
same 1000 as chains of depth DEPTH (deep_paths). They live below the bed's cgroup root
(report/bed.py), each once run in by a task (charge()) so hist_oncpu's stats map holds an entry for
every one of them, and the user-space mirror pins its iterator file for each (one Reconciler pass).

Routes (scrape_routes.py; scrape_iter.py holds the one-walk ones):
  cpu_stat       cgroupfs cpu.stat x N: open + read + close, parse usage_usec (the baseline)
  cpu_stat_held  cpu.stat, N fds held open, each re-read with pread(fd, buf, 0)
  files          the mirror's N pinned iterator files: open + read + close, parse
  files_held     the same files, N fds held open, re-read with pread(fd, buf, 0): run only when a
                 check on this host shows a pinned iterator file can be re-read that way
  iter_hist      one cgroup iterator (descendants_pre) at the set's root with hist_oncpu's own reader:
                 the files' text for every cgroup in one read() stream
  iter_lines     the same walk, one text line per cgroup (bench/report/bpf/scrape.bpf.c)
  iter_ring      the same walk, one binary record per cgroup into a ring buffer (scrape.bpf.c)
  prog_run       N x BPF_PROG_RUN of the report's stat_by_id (cgroup id in, raw struct out)
  batch          BPF_MAP_LOOKUP_BATCH over the whole stats map, kept: these N cgroups

Every route returns {cgroup id: value}; a scrape counts only if it holds exactly the set's N ids
(check_count); a route that cannot run, or fails its check, gets the reason, computed, not a number.
Each route's first scrape is an untimed warm-up (and the first check); then `scrapes` timed rounds,
the routes in a seeded shuffled order per round (measures.round_orders).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from bpffs_sync import libbpf
from bpffs_sync.errors import SyncError
from bpffs_sync.loader import cg_key
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report import scrape_iter, stats
from bpffs_sync.measure.report.bed import STAT, Bed
from bpffs_sync.measure.report.measures import round_orders
from bpffs_sync.measure.report.scrape_routes import ROUTES, VALUE_SIZE, Route, Scene, Scrape, routes
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.sandbox import remove_cgroup_tree

DEPTH = 8
SCRAPES = 5  # timed scrapes per route and set (the full run: SCRAPES_FULL)
SCRAPES_FULL = 7
BASELINE = "cpu_stat"
REFERENCE = "files"  # the hist_oncpu routes' values are compared with this one's


@dataclass(frozen=True, slots=True)
class CgSet:
    shape: str  # "flat" | "depth"
    n: int
    depth: int  # levels below the set's root

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.n}"


def sets(quick: bool) -> list[CgSet]:
    """The sets of a run: --quick 100 and 1000 (flat) and 1000 at depth DEPTH; full adds 10 000."""
    out = [CgSet("flat", 100, 1), CgSet("flat", 1000, 1), CgSet("depth", 1000, DEPTH)]
    return out if quick else [*out, CgSet("flat", 10000, 1)]


def flat_paths(root: str, n: int) -> list[str]:
    return [os.path.join(root, f"s{i}") for i in range(n)]


def deep_paths(root: str, n: int, depth: int) -> list[str]:
    """n cgroups as chains of `depth` levels below root (the last chain shorter), parents first."""
    out: list[str] = []
    chain = 0
    while len(out) < n:
        path = os.path.join(root, f"c{chain}")
        for level in range(min(depth, n - len(out))):
            if level:
                path = os.path.join(path, f"l{level}")
            out.append(path)
        chain += 1
    return out


def set_paths(root: str, s: CgSet) -> list[str]:
    return flat_paths(root, s.n) if s.shape == "flat" else deep_paths(root, s.n, s.depth)


# --- checks (pure) -------------------------------------------------------------------------------


def check_count(values: Mapping[int, int], ids: Sequence[int]) -> str | None:
    """None when values holds one value for each of ids (and maybe others: an iterator also sees
    the set's root), else why not."""
    got = sum(1 for i in ids if i in values)
    if got == len(ids):
        return None
    return f"count check failed: {got} of {len(ids)} cgroups answered"


def agreement(values: Mapping[int, int], reference: Mapping[int, int], ids: Sequence[int]) -> int:
    """How many of ids have the same value in both (idle cgroups: their figures do not move)."""
    return sum(1 for i in ids if i in values and values.get(i) == reference.get(i))


# --- the cgroups -----------------------------------------------------------------------------------

_CHARGE = ("import os, sys, time\npid = str(os.getpid())\nfor p in sys.stdin.read().split('\\n'):\n"
           "    with open(p + '/cgroup.procs', 'w') as f:\n        f.write(pid)\n    time.sleep(0.0002)\n")


def charge(paths: Sequence[str]) -> None:
    """One process runs in each cgroup in turn and sleeps there (a context switch), so hist_oncpu's
    collector makes a stats-map entry for every one; it exits when done (its last cgroup empties)."""
    subprocess.run([sys.executable, "-c", _CHARGE], input="\n".join(paths), text=True, check=True, timeout=600)


def uncharged(bed: Bed, paths: Sequence[str], ids: Sequence[int]) -> list[str]:
    """The cgroups of paths without a stats-map entry."""
    return [p for p, i in zip(paths, ids, strict=True)
            if ffi.map_lookup(bed.map_fd, cg_key(0, i), VALUE_SIZE, "oncpu_stats") is None]


def charge_all(bed: Bed, paths: Sequence[str], ids: Sequence[int], tries: int = 3) -> int:
    """charge() every cgroup, then again those the map still lacks (a switch the collector missed:
    seen once in 10 000 here), at most `tries` times; returns how many needed another run. Any
    still missing fail the routes' count check, which says how many answered."""
    charge(paths)
    again = 0
    for _ in range(tries - 1):
        missing = uncharged(bed, paths, ids)
        if not missing:
            break
        again += len(missing)
        charge(missing)
    return again


def _forget(bed: Bed, ids: Sequence[int]) -> None:
    """Drop the set's stats-map entries (the daemon would, on rmdir), so later sets walk a map
    of the same size."""
    for i in ids:
        libbpf.map_delete(bed.map_fd, cg_key(0, i), "oncpu_stats")


def _remove_pins(mirror: str) -> None:
    """The mirror's pins for a set (bpffs: unlink and rmdir); a failure raises, not a silent leak."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(mirror)


@contextlib.contextmanager
def made(bed: Bed, s: CgSet) -> Iterator[Scene]:
    """The set's cgroups, charged and mirrored; on exit the mirror's pins, the map entries and the
    cgroups go (also on error)."""
    root = os.path.join(bed.layout.cgroup_root, f"scrape-{s.name}")
    mirror = bed.layout.mirror_path((os.path.basename(root),))
    ids: list[int] = []
    with ExitStack() as stack:
        os.mkdir(root)
        stack.callback(remove_cgroup_tree, root)
        stack.callback(lambda: _forget(bed, ids))
        stack.callback(_remove_pins, mirror)
        paths = set_paths(root, s)
        for p in paths:
            os.mkdir(p)
        ids += [os.stat(p).st_ino for p in paths]
        again = charge_all(bed, paths, ids)
        Reconciler(bed.layout, {STAT: bed.loaded}).reconcile(())
        rel = [os.path.relpath(p, bed.layout.cgroup_root).split(os.sep) for p in paths]
        yield Scene(root, paths, ids, [bed.layout.mirror_path((*r, STAT)) for r in rel], again)


# --- measuring ---------------------------------------------------------------------------------------


def _timed(fn: Scrape) -> tuple[dict[int, int], int, int]:
    """(values, wall ns, this thread's CPU ns) of one full scrape."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    values = fn()
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    return values, w1 - w0, c1 - c0


def _attempt(fn: Scrape, ids: Sequence[int]) -> tuple[dict[int, int], int, int] | str:
    """One checked scrape, or why it failed (a failed read, or a count that is not N)."""
    try:
        values, wall, cpu = _timed(fn)
    except (OSError, SyncError, ValueError, KeyError, struct.error) as err:  # ValueError: ParseError too
        return str(err)
    return check_count(values, ids) or (values, wall, cpu)


def _warm_up(rs: Sequence[Route], ids: Sequence[int]) -> dict[str, Any]:
    """Each route's untimed first scrape, checked: an entry for its samples, or why it cannot run."""
    out: dict[str, Any] = {}
    for r in rs:
        got = r.missing if r.scrape is None else _attempt(r.scrape, ids)
        out[r.key] = stats.not_measured(got) if isinstance(got, str) else {"wall_ns": [], "cpu_ns": []}
    return out


def _counts(out: dict[str, Any], last: dict[str, dict[int, int]], ids: Sequence[int]) -> None:
    """Record each measured route's count, and how many values equal the files' (hist_oncpu routes;
    None when the files route gave none to compare with)."""
    ref = last.get(REFERENCE)
    for key, values in last.items():
        if stats.is_measured(out[key]):
            out[key]["count"] = sum(1 for i in ids if i in values)
            if key not in (BASELINE, "cpu_stat_held"):  # None: not compared, the files gave no values
                out[key]["same_as_files"] = agreement(values, ref, ids) if ref is not None else None


def measure_set(rs: Sequence[Route], ids: Sequence[int], orders: list[list[str]]) -> dict[str, Any]:
    """Warm-up (checked) then one timed scrape per route per round, in the round's order; a scrape
    that fails or miscounts ends its route with the reason."""
    out = _warm_up(rs, ids)
    last: dict[str, dict[int, int]] = {}
    by_key = {r.key: r for r in rs}
    for order in orders:
        for key in order:
            fn = by_key[key].scrape
            if not stats.is_measured(out[key]) or fn is None:
                continue
            got = _attempt(fn, ids)
            if isinstance(got, str):
                out[key] = stats.not_measured(got)
                continue
            last[key], wall, cpu = got
            out[key]["wall_ns"].append(wall)
            out[key]["cpu_ns"].append(cpu)
    _counts(out, last, ids)
    return out


def run_set(bed: Bed, s: CgSet, walker: scrape_iter.Walker | str, scrapes: int, seed: int) -> dict[str, Any]:
    t0 = time.monotonic()
    with made(bed, s) as scene, ExitStack() as stack:
        prepared = time.monotonic() - t0
        rs = routes(bed, scene, walker, stack)
        orders = round_orders([r.key for r in rs if r.scrape is not None], scrapes, seed)
        got = measure_set(rs, scene.ids, orders)
    return {"shape": s.shape, "n": s.n, "depth": s.depth, "scrapes": scrapes, "order": orders,
            "prepare_s": prepared, "recharged": scene.recharged, "routes": got}


def run(bed: Bed, quick: bool, seed: int) -> dict[str, Any]:
    """The scrape table's measurements: every set, every route (results.json's `scrape`)."""
    scrapes = SCRAPES if quick else SCRAPES_FULL
    t0 = time.monotonic()
    with ExitStack() as stack:
        walker: scrape_iter.Walker | str
        try:
            walker = scrape_iter.Walker(bed)
            stack.callback(walker.close)
        except SyncError as err:
            walker = f"scrape.bpf.o did not load here: {err}"
        done = [run_set(bed, s, walker, scrapes, seed + i) for i, s in enumerate(sets(quick))]
    return {"seed": seed, "scrapes": scrapes, "depth": DEPTH, "baseline": BASELINE, "routes": ROUTES,
            "sets": done, "duration_s": time.monotonic() - t0}
