"""Scale, as monitoring does it (issue 22, Build item 4): a scraper reads every cgroup's stat of N
cgroups, through each route this host has, and each full scrape is timed (wall and this thread's CPU
time, which includes the kernel's work in our syscalls).

The cgroups (sets()): N = 100 and 1000 side by side (flat), plus 10 000 in the full run, and the
same 1000 as chains of depth DEPTH (deep_paths). They live below the bed's cgroup root
(report/bed.py), each once run in by a task (charge()) so hist_oncpu's stats map holds an entry for
every one of them, and the user-space mirror pins its iterator file for each (one Reconciler pass).

Routes (ROUTES; scrape_iter.py holds the iterator ones):
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
import errno
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from bpffs_sync import libbpf
from bpffs_sync.errors import SyncError
from bpffs_sync.histogram import ParseError, parse_stat
from bpffs_sync.loader import cg_key
from bpffs_sync.measure import batch, ffi
from bpffs_sync.measure.report import scrape_iter, stats
from bpffs_sync.measure.report.bed import STAT, Bed
from bpffs_sync.measure.report.measures import round_orders
from bpffs_sync.measure.report.mechanisms import MAX_SLOTS, prog_found
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.sandbox import remove_cgroup_tree

DEPTH = 8
SCRAPES = 5  # timed scrapes per route and set (the full run: SCRAPES_FULL)
SCRAPES_FULL = 7
BASELINE = "cpu_stat"
REFERENCE = "files"  # the hist_oncpu routes' values are compared with this one's
_KEY_SIZE = 16  # struct cg_key
_VALUE_SIZE = 8 * (2 + MAX_SLOTS)  # struct hist_value
_CTX_HEAD = 24  # struct stat_args up to value: key, found, pad
READ_SIZE = 1 << 16


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


def kv_value(text: str, key: str) -> int:
    """The value of `key` in a cgroupfs `key value` file (cpu.stat), parsed whole like a reader."""
    fields = dict(line.split(" ", 1) for line in text.splitlines())
    return int(fields[key])


def errno_text(err: OSError) -> str:
    code = err.errno or 0
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


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
            if ffi.map_lookup(bed.map_fd, cg_key(0, i), _VALUE_SIZE, "oncpu_stats") is None]


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


@dataclass(slots=True)
class Scene:
    """A made set: its root, its cgroups (parents first), their ids, the mirror's files for them;
    recharged: how many cgroups charge_all() ran in a second time."""

    root: str
    paths: list[str]
    ids: list[int]
    files: list[str]
    recharged: int = 0


def _forget(bed: Bed, ids: Sequence[int]) -> None:
    """Drop the set's stats-map entries (the daemon would, on rmdir), so later sets walk a map
    of the same size."""
    for i in ids:
        libbpf.map_delete(bed.map_fd, cg_key(0, i), "oncpu_stats")


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
        stack.callback(subprocess.run, ["rm", "-rf", mirror], check=False)
        paths = set_paths(root, s)
        for p in paths:
            os.mkdir(p)
        ids += [os.stat(p).st_ino for p in paths]
        again = charge_all(bed, paths, ids)
        Reconciler(bed.layout, {STAT: bed.loaded}).reconcile(())
        rel = [os.path.relpath(p, bed.layout.cgroup_root).split(os.sep) for p in paths]
        yield Scene(root, paths, ids, [bed.layout.mirror_path((*r, STAT)) for r in rel], again)


# --- routes ------------------------------------------------------------------------------------------

Scrape = Callable[[], dict[int, int]]


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    label: str
    scrape: Scrape | None  # None: cannot run here (missing says why)
    missing: str = ""


def _cpu_stat(scene: Scene) -> Scrape:
    pairs = [(i, os.path.join(p, "cpu.stat")) for i, p in zip(scene.ids, scene.paths, strict=True)]

    def scrape() -> dict[int, int]:
        out = {}
        for i, path in pairs:
            with open(path, encoding="ascii") as f:
                out[i] = kv_value(f.read(), "usage_usec") * 1000
        return out
    return scrape


def _files(scene: Scene) -> Scrape:
    files = scene.files

    def scrape() -> dict[int, int]:
        out = {}
        for path in files:
            with open(path, encoding="utf-8") as f:
                s = parse_stat(f.read()).summary
            out[s["cgroup_id"]] = s["total_ns"]
        return out
    return scrape


def reread_check(path: str) -> str | None:
    """None when a file opened once can be read again from offset 0 with pread (the data again),
    else the errno pread gave (and lseek's, the other way back to 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, READ_SIZE)
        try:
            again = os.pread(fd, READ_SIZE, 0)
        except OSError as err:
            return f"pread(fd, {READ_SIZE}, 0) after a first read: {errno_text(err)}; {_lseek_note(fd)}"
        if again and again.split(maxsplit=1)[:1] == first.split(maxsplit=1)[:1]:
            return None
        return (f"pread(fd, {READ_SIZE}, 0) after a first read of {len(first)} bytes returned {len(again)} "
                f"bytes{' (end of file): the file does not start over at offset 0' if not again else ''}; "
                f"{_lseek_note(fd)}")
    finally:
        os.close(fd)


def _lseek_note(fd: int) -> str:
    """What lseek(fd, 0, SEEK_SET) says, the other way back to the start."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as err:
        return f"lseek(fd, 0, SEEK_SET): {errno_text(err)}"
    return "lseek(fd, 0, SEEK_SET) succeeds"


def _room_for(n: int) -> str | None:
    """Raise the soft fd limit to the hard one if n more fds need it; None, or why they do not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + len(os.listdir("/proc/self/fd")) + 64
    if need > soft and need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return None if need <= soft else f"{n} held fds do not fit RLIMIT_NOFILE {soft} (hard {hard})"


def _held(stack: ExitStack, paths: Sequence[str], keys: Sequence[int] | None,
          parse: Callable[[bytes], tuple[int, int]]) -> Route | Scrape:
    """N fds held open; each scrape preads each from 0. keys: the id per path (None: parse gives it)."""
    why = reread_check(paths[0]) or _room_for(len(paths))
    if why:
        return Route("", "", None, why)
    fds = []
    for p in paths:
        fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        stack.callback(os.close, fds[-1])
    ids = list(keys) if keys is not None else [0] * len(fds)

    def scrape() -> dict[int, int]:
        out = {}
        for i, fd in zip(ids, fds, strict=True):
            cg, value = parse(os.pread(fd, READ_SIZE, 0))
            out[cg or i] = value
        return out
    return scrape


def _parse_stat_bytes(raw: bytes) -> tuple[int, int]:
    s = parse_stat(raw.decode()).summary
    return s["cgroup_id"], s["total_ns"]


def _prog_run(bed: Bed, scene: Scene) -> Scrape:
    ctxs = [(i, (0).to_bytes(8, "little") + i.to_bytes(8, "little") + bytes(8 + _VALUE_SIZE)) for i in scene.ids]

    def scrape() -> dict[int, int]:
        out = {}
        for i, ctx in ctxs:
            _, got = ffi.prog_test_run_ctx(bed.prog_fd, ctx, "stat_by_id")
            if prog_found(got):
                out[i] = int.from_bytes(got[_CTX_HEAD:_CTX_HEAD + 8], "little")
        return out
    return scrape


def _batch(bed: Bed, scene: Scene) -> Scrape:
    wanted = set(scene.ids)

    def scrape() -> dict[int, int]:
        out = {}
        for key, value in batch.lookup_batch(bed.map_fd, _KEY_SIZE, _VALUE_SIZE, what="oncpu_stats"):
            hierarchy, cg = int.from_bytes(key[:4], "little"), int.from_bytes(key[8:], "little")
            if hierarchy == 0 and cg in wanted:
                out[cg] = int.from_bytes(value[:8], "little")
        return out
    return scrape


ROUTES = {
    "cpu_stat": "cgroupfs cpu.stat x N: open + read + close, parse usage_usec (baseline)",
    "cpu_stat_held": "cgroupfs cpu.stat, N fds held open: pread(fd, buf, 0) each",
    "files": "user-space mirror: N pinned iterator files, open + read + close, parse",
    "files_held": "user-space mirror: N pinned iterator files held open: pread(fd, buf, 0) each",
    "iter_hist": "one cgroup iterator (descendants_pre) with hist_oncpu's reader: the files' text, one stream",
    "iter_lines": "one cgroup iterator (descendants_pre), one text line per cgroup (scrape_lines)",
    "iter_ring": "one cgroup iterator (descendants_pre), one record per cgroup into a ring buffer (scrape_ring)",
    "prog_run": "N x BPF_PROG_RUN of stat_by_id (cgroup id in, raw struct out)",
    "batch": "BPF_MAP_LOOKUP_BATCH of the whole stats map, these N kept",
}


def routes(bed: Bed, scene: Scene, walker: scrape_iter.Walker | str, stack: ExitStack) -> list[Route]:
    """Every route for one set, set up (fds opened, links made; undone by stack)."""
    made: dict[str, Route | Scrape] = {
        "cpu_stat": _cpu_stat(scene),
        "cpu_stat_held": _held(stack, [os.path.join(p, "cpu.stat") for p in scene.paths], scene.ids,
                               lambda raw: (0, kv_value(raw.decode(), "usage_usec") * 1000)),
        "files": _files(scene),
        "files_held": _held(stack, scene.files, None, _parse_stat_bytes),
        "prog_run": _prog_run(bed, scene),
        "batch": _batch(bed, scene),
    }
    root_fd = os.open(scene.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack.callback(os.close, root_fd)
    what = f"at {os.path.basename(scene.root)}"
    made["iter_hist"] = scrape_iter.hist_walk(stack, bed.loaded.reader, root_fd, what)
    for key in ("iter_lines", "iter_ring"):
        made[key] = (Route(key, "", None, walker) if isinstance(walker, str)
                     else walker.walk(stack, key.removeprefix("iter_"), root_fd, what))
    out = []
    for key, label in ROUTES.items():
        got = made[key]
        out.append(Route(key, label, None, got.missing) if isinstance(got, Route) else Route(key, label, got))
    return out


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
    except (OSError, SyncError, ParseError, KeyError) as err:
        return str(err)
    return check_count(values, ids) or (values, wall, cpu)


def measure_set(rs: Sequence[Route], ids: Sequence[int], orders: list[list[str]]) -> dict[str, Any]:
    """Warm-up (checked) then one timed scrape per route per round, in the round's order."""
    out: dict[str, Any] = {}
    last: dict[str, dict[int, int]] = {}
    by_key = {r.key: r for r in rs}
    for r in rs:
        if r.scrape is None:
            out[r.key] = stats.not_measured(r.missing)
            continue
        got = _attempt(r.scrape, ids)
        out[r.key] = stats.not_measured(got) if isinstance(got, str) else {"wall_ns": [], "cpu_ns": []}
    for order in orders:
        for key in order:
            entry, fn = out[key], by_key[key].scrape
            if not stats.is_measured(entry) or fn is None:
                continue
            got = _attempt(fn, ids)
            if isinstance(got, str):
                out[key] = stats.not_measured(got)
                continue
            last[key], wall, cpu = got
            entry["wall_ns"].append(wall)
            entry["cpu_ns"].append(cpu)
    ref = last.get(REFERENCE, {})
    for key, values in last.items():
        if stats.is_measured(out[key]):
            out[key]["count"] = sum(1 for i in ids if i in values)
            if key not in (BASELINE, "cpu_stat_held") and ref:
                out[key]["same_as_files"] = agreement(values, ref, ids)
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
