"""The stock-kernel measures. Each returns a JSON-able dict with its raw samples; every ratio is
against a baseline measured in the same call.

read_costs      per mechanism: N timed operations from the C loop and from a Python loop, in rounds
                whose mechanism order is a seeded shuffle (interleaved(); the seed is in results.json)
breakdown       the C loop again with a clock around each syscall: open / read / close / bpf(2) / rest
under_churn     the C loop again while another process mkdirs/rmdirs cgroups nonstop (cgroup_mutex)
mkdir_readable  mkdir -> first successful read of a new cgroup of its own, per mechanism that can
                name it, mechanisms in a seeded shuffled order per round
populate        the user-space mirror's first pass over N cgroups vs making them; the worst mkdir
                latency of a concurrent prober during it vs idle; slab per mirrored file
mkdir_cost      mkdir+rmdir of N cgroups with the mirror daemon running vs without
memory          bytes per cgroup: mirror pin (slab), map entry (memlock), xattr (slab)
kernel_loc      added lines of the kernel series, per part
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bpffs_sync.loader import LoadedStat
from bpffs_sync.measure import ffi, harness
from bpffs_sync.measure.harness import make_tree, remove_tree, slab_bytes, tree_paths
from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.bed import XATTR, Bed
from bpffs_sync.measure.report.compiled import REPO
from bpffs_sync.measure.report.mechanisms import Mechanism, Output, prog_found, value_of
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

PY_WARMUP = 20


# --- loops ---------------------------------------------------------------------------------------


def _readloop(readloop: str, args: list[str], n: int, env: dict[str, str] | None = None) -> list[str]:
    """readloop's stdout lines: "value V", then one line per operation."""
    proc = subprocess.run([readloop, args[0], str(n), *args[1:]], capture_output=True, text=True, check=False,
                          env={**os.environ, **env} if env else None)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"readloop {args[0]} exited {proc.returncode}")
    return proc.stdout.splitlines()


def c_loop(readloop: str, args: list[str], n: int) -> tuple[int, list[int]]:
    """Run the C loop: (value read, per-operation ns)."""
    lines = _readloop(readloop, args, n)
    return int(lines[0].split()[1]), [int(x) for x in lines[1:]]


PHASES = ("open", "read", "close", "bpf")  # readloop's READLOOP_PHASES columns after the total


def c_phases(readloop: str, args: list[str], n: int) -> tuple[int, dict[str, list[int]]]:
    """The C loop with a clock around each syscall (READLOOP_PHASES=1): (value, {"total", each of
    PHASES, "rest": the total less the syscalls (user-space work and the clock reads)} -> ns per op)."""
    lines = _readloop(readloop, args, n, {"READLOOP_PHASES": "1"})
    rows = [[int(x) for x in line.split()] for line in lines[1:]]
    out: dict[str, list[int]] = {"total": [r[0] for r in rows]}
    for i, name in enumerate(PHASES, 1):
        out[name] = [r[i] for r in rows]
    out["rest"] = [r[0] - sum(r[1:]) for r in rows]
    return int(lines[0].split()[1]), out


def c_output(readloop: str, args: list[str], path: str) -> tuple[int, bytes]:
    """What one operation of the C loop produced (READLOOP_OUT): (value, bytes)."""
    lines = _readloop(readloop, args, 1, {"READLOOP_OUT": path})
    with open(path, "rb") as f:
        return int(lines[0].split()[1]), f.read()


def py_loop(op: Callable[[], Output], n: int) -> tuple[int, list[int]]:
    """n timed operations (after PY_WARMUP): (the number the last one produced, per-operation ns)."""
    out: Output = 0
    for _ in range(PY_WARMUP):
        out = op()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        out = op()
        samples.append(clock() - t0)
    return value_of(out), samples


def series(value: int, samples: list[int]) -> dict[str, Any]:
    return {"value": value, "summary": stats.summarize_ns(samples), "samples_ns": samples}


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A measure that failed here is reported as such, with the reason, never as a number."""
    try:
        return fn()
    except (OSError, RuntimeError, subprocess.SubprocessError, TimeoutError) as err:
        return stats.not_measured(f"failed here: {err}")


def round_orders(keys: list[str], rounds: int, seed: int) -> list[list[str]]:
    """The order of the mechanisms in each round: a shuffle per round from one seeded RNG (the seed
    is recorded in results.json, so the order of a run can be redone)."""
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        order = list(keys)
        rng.shuffle(order)
        out.append(order)
    return out


def split(n: int, rounds: int) -> list[int]:
    """n samples over `rounds` rounds, as even as it goes (the first rounds take the remainder)."""
    return [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one series as one: samples in the order taken; a failed round fails the series."""
    for p in parts:
        if not stats.is_measured(p):
            return p
    samples = [s for p in parts for s in p["samples_ns"]]
    return series(parts[-1]["value"], samples) | {"rounds": len(parts)}


def interleaved(mechs: list[Mechanism], orders: list[list[str]],
                one: Callable[[Mechanism, int], dict[str, dict[str, Any]]], n: int) -> dict[str, Any]:
    """Run one(mech, samples) for every mechanism in every round, in that round's order; merge each
    mechanism's rounds. one() returns {"c": series, "py": series} (or a not_measured entry)."""
    by_key = {m.key: m for m in mechs}
    parts: dict[str, list[dict[str, Any]]] = {}
    for order, count in zip(orders, split(n, len(orders)), strict=True):
        for key in order:
            parts.setdefault(key, []).append(one(by_key[key], count))
    out: dict[str, Any] = {}
    for m in mechs:  # the mechanisms' own order, for the tables
        got = parts[m.key]
        if not all(stats.is_measured(g) for g in got):
            out[m.key] = next(g for g in got if not stats.is_measured(g))
            continue
        out[m.key] = {col: _merge([g[col] for g in got]) for col in got[0]}
    return out


def read_cost(bed: Bed, mech: Mechanism, n_c: int, n_py: int) -> dict[str, Any]:
    """One round of one mechanism: n_c timed operations of the C loop, n_py of the Python loop."""
    if mech.cloop is None or mech.python is None:
        return stats.not_measured(mech.missing)
    cloop, python = mech.cloop, mech.python
    return {
        "c": _attempt(lambda: series(*c_loop(bed.tools.readloop, cloop, n_c))),
        "py": _attempt(lambda: series(*py_loop(python, max(1, n_py)))),
    }


def read_costs(bed: Bed, mechs: list[Mechanism], n_c: int, n_py: int, orders: list[list[str]]) -> dict[str, Any]:
    """read_cost of every mechanism, rounds interleaved in the given orders (n_py split like n_c)."""
    ratio = n_py / n_c
    return interleaved(mechs, orders, lambda m, k: read_cost(bed, m, k, round(k * ratio)), n_c)


def breakdown(bed: Bed, mechs: list[Mechanism], n: int, orders: list[list[str]]) -> dict[str, Any]:
    """The per-syscall breakdown of each mechanism's C loop (its own run: the clocks around each call
    add to the total, so the read table's totals come from the loop without them), rounds interleaved
    in the given orders: {key: {"total" | each of PHASES | "rest": series}}."""

    def one(m: Mechanism, k: int) -> dict[str, Any]:
        cloop = m.cloop
        if cloop is None:
            return stats.not_measured(m.missing)
        try:
            value, cols = c_phases(bed.tools.readloop, cloop, k)
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            return stats.not_measured(f"failed here: {err}")
        return {name: series(value, samples) for name, samples in cols.items()}

    return interleaved(mechs, orders, one, n)


@contextlib.contextmanager
def churning(readloop: str, parent: str) -> Iterator[None]:
    """Another process mkdirs and rmdirs cgroups under parent nonstop (each takes cgroup_mutex)."""
    os.mkdir(parent)
    proc = subprocess.Popen([readloop, "churn", "0", parent], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait(10)
        for name in os.listdir(parent):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))
        os.rmdir(parent)


def under_churn(bed: Bed, mechs: list[Mechanism], n_c: int, orders: list[list[str]]) -> dict[str, Any]:
    """The C loop of each read mechanism while cgroups are made and removed beside the target,
    rounds interleaved in the given orders."""

    def one(m: Mechanism, k: int) -> dict[str, Any]:
        cloop = m.cloop
        if cloop is None:
            return stats.not_measured(m.missing)
        return {"c": _attempt(lambda: series(*c_loop(bed.tools.readloop, cloop, k)))}

    with churning(bed.tools.readloop, os.path.join(bed.layout.cgroup_root, "churn")):
        got = interleaved(mechs, orders, one, n_c)
    return {k: v["c"] if stats.is_measured(v) else v for k, v in got.items()}


# --- mkdir -> readable -----------------------------------------------------------------------------


DAEMON_START_S = 60.0  # how long the daemon may take to mirror its first cgroup (inguest raises it: TCG)


@contextlib.contextmanager
def mirror_daemon(layout: Layout, start_timeout: float | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`bpffs-sync run --user-space` on the bed's bpffs, as its own process (the user-space mirror,
    also on a kernel carrying a series, which `run` would pick by default); stopped on exit."""
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, "BPFFS_SYNC_RUN_DIR": run_dir}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "--log-level", "warning", "run",
             "--user-space", "--bpffs", layout.bpffs, "--cgroup-root", layout.cgroup_root,
             "--resync-interval", "3600"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Ready once it mirrors a cgroup made after its start (the files are the contract).
        marker = os.path.join(layout.cgroup_root, "daemon-ready")
        os.mkdir(marker)
        try:
            wait_until(lambda: readable_file(layout.mirror_path(("daemon-ready", "hist_oncpu")))()
                       or proc.poll() is not None, start_timeout or DAEMON_START_S, "report daemon start")
            if proc.poll() is not None:
                raise RuntimeError("the mirror daemon exited during start-up")
            os.rmdir(marker)
            yield proc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(marker)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def readable_file(path: str) -> Callable[[], bool]:
    def ok() -> bool:
        try:
            with open(path, "rb") as f:
                return bool(f.read())
        except OSError:
            return False
    return ok


READABLE = ("readable: the read returns the new cgroup's own record (a per-cgroup file that opens and is "
            "not empty, an iterator's output naming a cgroup_id, cpu.stat's usage_usec, BPF_PROG_RUN's "
            "found=1); found=0 is the answer for any unknown id, so it is not")
TIMEOUT_S = 0.25  # a read not there after this counts as not readable (a timeout, not an error)
GIVE_UP = 3  # consecutive timeouts after which a mechanism is not polled again in this run


def first_read(ok: Callable[[], bool], t0: int, timeout: float = TIMEOUT_S,
               clock: Callable[[], int] = time.perf_counter_ns,
               pause: Callable[[float], None] = time.sleep) -> tuple[int | None, int]:
    """(ns from t0, the moment mkdir returned, until ok() first returned true, or None after
    `timeout`; attempts); polls with 50 us pauses."""
    attempts = 0
    while True:
        attempts += 1
        if ok():
            return clock() - t0, attempts
        if clock() - t0 > timeout * 1e9:
            return None, attempts
        pause(50e-6)


def readable_summary(tries: list[tuple[int | None, int]], gave_up: bool = False) -> dict[str, Any]:
    """One mechanism's mkdir -> readable tries [(ns or None for a timeout, attempts)] as the report's
    entry. The one definition of success is READABLE's; the lag summary is over the readable ones."""
    ns = [t for t, _ in tries if t is not None]
    out: dict[str, Any] = {
        "tries": len(tries), "readable": len(ns), "timeouts": len(tries) - len(ns), "timeout_s": TIMEOUT_S,
        "first_try": sum(1 for t, a in tries if t is not None and a == 1) / len(tries) if tries else 0.0,
        "attempts_max": max((a for _, a in tries), default=0), "samples_ns": ns,
        "gave_up": f"stopped after {GIVE_UP} timeouts in a row" if gave_up else None,
    }
    if ns:
        out["summary"] = stats.summarize_ns(ns)
    return out


def _readers_for(bed: Bed, cg: str, rel: str) -> dict[str, Callable[[], bool]]:
    """For a new cgroup `cg`: one "is it readable now" check per mechanism that names cgroups."""

    def cpu_stat() -> bool:
        try:
            with open(os.path.join(cg, "cpu.stat"), encoding="ascii") as f:
                return "usage_usec" in f.read()
        except OSError:
            return False

    def prog_run() -> bool:
        ctx = (0).to_bytes(4, "little") * 2 + os.stat(cg).st_ino.to_bytes(8, "little") + bytes(8 + 232)
        _, out = ffi.prog_test_run_ctx(bed.prog_fd, ctx, "stat_by_id")
        return prog_found(out)

    def iter_per_read() -> bool:
        fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with ffi.attach_cgroup_iter(bed.loaded.reader, fd, cg) as link:
                return b"cgroup_id" in ffi.iter_read(link)
        finally:
            os.close(fd)

    return {"mirror_iter": readable_file(bed.layout.mirror_path((rel, "hist_oncpu"))), "cpu_stat": cpu_stat,
            "prog_run": prog_run, "iter_per_read": iter_per_read}


MKDIR_KEYS = ["mirror_iter", "cpu_stat", "prog_run", "iter_per_read"]


def mkdir_readable(bed: Bed, orders: list[list[str]]) -> dict[str, Any]:
    """Per round, in that round's order (round_orders of MKDIR_KEYS: the caller records them), each
    mechanism gets its own new cgroup: mkdir, the clock starts when mkdir returns, then its check is
    polled until it reads that cgroup (READABLE) or TIMEOUT_S passes. The mirror runs as a daemon
    process here (the way it is deployed)."""
    tries: dict[str, list[tuple[int | None, int]]] = {k: [] for k in MKDIR_KEYS}
    stopped: set[str] = set()
    parent = os.path.join(bed.layout.cgroup_root, "fresh")
    os.mkdir(parent)
    try:
        with mirror_daemon(bed.layout):
            wait_until(readable_file(bed.layout.mirror_path(("fresh", "hist_oncpu"))), 10, "fresh mirrored")
            for i, order in enumerate(orders):
                for key in order:
                    if key in stopped:
                        continue
                    rel = f"c{i}-{key}"
                    cg = os.path.join(parent, rel)
                    readers = _readers_for(bed, cg, os.path.join("fresh", rel))
                    os.mkdir(cg)
                    t0 = time.perf_counter_ns()
                    tries[key].append(first_read(readers[key], t0))
                    if len(tries[key]) >= GIVE_UP and all(t is None for t, _ in tries[key][-GIVE_UP:]):
                        stopped.add(key)
                    # Settle (not timed): the daemon mirrors every new cgroup; let it finish this one
                    # so no backlog of the previous mkdir lands in the next mechanism's measurement.
                    first_read(readers["mirror_iter"], time.perf_counter_ns())
    finally:
        for name in os.listdir(parent):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    return {k: readable_summary(v, k in stopped) | {"definition": READABLE} for k, v in tries.items()}


# --- populate, mkdir cost, memory ---------------------------------------------------------------


@contextlib.contextmanager
def mkdir_prober(readloop: str, parent: str) -> Iterator[Callable[[], list[int]]]:
    """A concurrent mkdir-latency probe (the C loop, own process: harness.stall_probe) in its own
    cgroup directory, made and removed here; the body starts 0.05 s after the probe."""
    os.mkdir(parent)
    try:
        with harness.stall_probe(parent, "readloop", readloop=readloop, count=2_000_000, settle=0.05) as samples:
            yield lambda: [s.latency_ns for s in samples]
    finally:
        os.rmdir(parent)


def populate(readloop: str, n: int) -> dict[str, Any]:
    """The user-space mirror's first full pass over n cgroups (programs loaded first), against
    mkdir of the same n cgroups; a concurrent mkdir prober's latency during the pass vs idle;
    the slab growth per mirrored file."""
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-report-pop") as root:
        layout = Layout(mnt, root)
        probe_dir = os.path.join(os.path.dirname(root), os.path.basename(root) + "-probe")
        t0 = time.perf_counter_ns()
        made = make_tree(root, n)
        mkdir_ns = time.perf_counter_ns() - t0
        loaded = LoadedStat(layout, lookup("hist_oncpu"))
        try:
            rec = Reconciler(layout, {"hist_oncpu": loaded})
            with mkdir_prober(readloop, probe_dir) as idle:
                time.sleep(0.3)
            slab0 = slab_bytes()
            with mkdir_prober(readloop, probe_dir) as busy:
                t0 = time.perf_counter_ns()
                res = rec.reconcile(())
                pass_ns = time.perf_counter_ns() - t0
            slab1 = slab_bytes()
            pins = res.applied.done.get("pin", 0)
            subprocess.run(["rm", "-rf", layout.mirror_root], check=True)
        finally:
            loaded.close()
        remove_tree(made)
    idle_ns, busy_ns = idle(), busy()  # each call builds its list anew
    return {
        "cgroups": n, "pins": pins, "first_pass_ns": pass_ns, "mkdir_ns": mkdir_ns,
        "ratio_vs_mkdir": stats.ratio(pass_ns, mkdir_ns),
        "per_cgroup_us": pass_ns / n / 1000,
        "probe_idle": {"summary": stats.summarize_ns(idle_ns), "samples_ns": idle_ns} if idle_ns else
        stats.not_measured("prober made no sample"),
        "probe_during_pass": {"summary": stats.summarize_ns(busy_ns), "samples_ns": busy_ns} if busy_ns else
        stats.not_measured("prober made no sample during the pass"),
        "slab_per_file_bytes": (slab1 - slab0) / max(pins, 1),
    }


def _timed_tree(parent: str, n: int) -> tuple[list[int], list[int]]:
    """mkdir then rmdir of n cgroups under parent, each timed: (mkdir ns, rmdir ns), in the order made."""
    paths = tree_paths(parent, n)
    clock = time.perf_counter_ns
    mk, rm = [], []
    os.mkdir(parent)
    try:
        for path in paths:
            t0 = clock()
            os.mkdir(path)
            mk.append(clock() - t0)
        for path in reversed(paths):
            t0 = clock()
            os.rmdir(path)
            rm.append(clock() - t0)
    finally:
        for path in reversed(paths):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)
        os.rmdir(parent)
    return mk, rm[::-1]


def mkdir_cost(bed: Bed, n: int, rounds: int, seed: int) -> dict[str, Any]:
    """mkdir then rmdir of n cgroups under the bed's root, each call timed, with the mirror daemon
    running and without (same tree shape, same run), in `rounds` rounds of n / rounds cgroups whose
    order (without, with) is a seeded shuffle: what running the user-space mirror adds to them."""
    orders = round_orders(["plain", "mirrored"], rounds, seed)
    got: dict[str, dict[str, list[int]]] = {k: {"mkdir": [], "rmdir": []} for k in ("plain", "mirrored")}
    parent = os.path.join(bed.layout.cgroup_root, "cost")
    for order, count in zip(orders, split(n, rounds), strict=True):
        for key in order:
            with mirror_daemon(bed.layout) if key == "mirrored" else contextlib.nullcontext():
                mk, rm = _timed_tree(parent, count)
            got[key]["mkdir"] += mk
            got[key]["rmdir"] += rm
    out: dict[str, Any] = {"cgroups": n, "rounds": orders}
    for key, ops in got.items():
        cycle = [a + b for a, b in zip(ops["mkdir"], ops["rmdir"], strict=True)]
        out[key] = {op: series(0, v) for op, v in (*ops.items(), ("cycle", cycle))}
        out[f"mkdir_{key}_ns"], out[f"rmdir_{key}_ns"] = sum(ops["mkdir"]), sum(ops["rmdir"])
    out["mkdir_ratio"] = stats.ratio(out["mkdir_mirrored_ns"], out["mkdir_plain_ns"])
    out["rmdir_ratio"] = stats.ratio(out["rmdir_mirrored_ns"], out["rmdir_plain_ns"])
    return out


def _memlock(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("memlock:"):
                return int(line.split()[1])
    raise RuntimeError("no memlock in fdinfo")


def memory(bed: Bed, n: int) -> dict[str, Any]:
    """Bytes per cgroup of the per-cgroup state each mechanism keeps."""
    from bpffs_sync import libbpf

    info = libbpf.map_info(bed.map_fd)
    parent = os.path.join(bed.layout.cgroup_root, "xattrs")
    os.mkdir(parent)
    try:
        dirs = [os.path.join(parent, f"x{i}") for i in range(n)]
        for d in dirs:
            os.mkdir(d)
        slab0 = slab_bytes()
        for d in dirs:
            os.setxattr(d, XATTR, b"12345678")
        xattr_per = (slab_bytes() - slab0) / n
        for d in dirs:
            os.rmdir(d)
    finally:
        os.rmdir(parent)
    return {
        "map_memlock_bytes": _memlock(bed.map_fd), "map_max_entries": info.max_entries,
        "map_per_entry_bytes": _memlock(bed.map_fd) / info.max_entries,
        "xattr_cgroups": n, "xattr_per_cgroup_bytes": xattr_per,
    }


# --- kernel lines of code -------------------------------------------------------------------------

_FILE = re.compile(r"^\+\+\+ b/(\S+)")


def patch_lines(patch_dir: Path, only: Iterable[str] | None = None) -> dict[str, int]:
    """Lines added by a series, by part: kernel (kernel/, include/, fs/, mm/ ...), selftests
    (tools/testing/), tools (uapi copy, libbpf). only: the patch numbers ("0001") to count."""
    parts = {"kernel": 0, "selftests": 0, "tools": 0, "removed": 0}
    wanted = None if only is None else set(only)
    for patch in sorted(patch_dir.glob("*.patch")):
        if "cover-letter" in patch.name or (wanted is not None and patch.name[:4] not in wanted):
            continue
        part = "kernel"
        for line in patch.read_text(errors="replace").splitlines():
            m = _FILE.match(line)
            if m:
                path = m.group(1)
                part = "selftests" if path.startswith("tools/testing/") else "tools" if path.startswith("tools/") \
                    else "kernel"
            elif line.startswith("+") and not line.startswith("+++"):
                parts[part] += 1
            elif line.startswith("-") and not line.startswith("---"):
                parts["removed"] += 1
    return parts


def kernel_loc() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (("a1_file", "kernel-approach1"), ("a2_file", "kernel-approach2")):
        d = REPO / name / "patches"
        if d.is_dir() and any(d.glob("*.patch")):
            out[key] = patch_lines(d)
        else:
            out[key] = stats.not_measured(f"{name}/patches absent: the series has not landed in this checkout")
    # Each series carries the prerequisites both need (kernel-approach2/prereqs): counted in both
    # rows above, and once here.
    prereqs = REPO / "kernel-approach2" / "prereqs"
    if prereqs.is_file() and (REPO / "kernel-approach2" / "patches").is_dir():
        mine = [line.split()[0] for line in prereqs.read_text().splitlines() if line.strip() and line[0] != "#"]
        out["shared"] = patch_lines(REPO / "kernel-approach2" / "patches", mine)
    else:
        out["shared"] = stats.not_measured("kernel-approach2/prereqs absent")
    return out
