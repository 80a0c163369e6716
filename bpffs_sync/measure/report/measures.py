"""The stock-kernel measures. Each returns a JSON-able dict with its raw samples; every ratio is
against a baseline measured in the same call.

read_cost       per mechanism: N timed operations from the C loop and from a Python loop
under_churn     the C loop again while another process mkdirs/rmdirs cgroups nonstop (cgroup_mutex)
mkdir_readable  mkdir -> first successful read of the new cgroup, per mechanism that can name it
populate        the user-space mirror's first pass over N cgroups vs making them; the worst mkdir
                latency of a concurrent prober during it vs idle; slab per mirrored file
mkdir_cost      mkdir+rmdir of N cgroups with the mirror daemon running vs without
memory          bytes per cgroup: mirror pin (slab), map entry (memlock), xattr (slab)
kernel_loc      added lines of the kernel series, per part
"""

from __future__ import annotations

import contextlib
import os
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
from bpffs_sync.measure.harness import make_tree, remove_tree, slab_bytes
from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.bed import XATTR, Bed
from bpffs_sync.measure.report.compiled import REPO
from bpffs_sync.measure.report.mechanisms import Mechanism
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

PY_WARMUP = 20


# --- loops ---------------------------------------------------------------------------------------


def c_loop(readloop: str, args: list[str], n: int) -> tuple[int, list[int]]:
    """Run the C loop: (value read, per-operation ns)."""
    proc = subprocess.run([readloop, args[0], str(n), *args[1:]], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"readloop {args[0]} exited {proc.returncode}")
    lines = proc.stdout.split()
    return int(lines[1]), [int(x) for x in lines[2:]]


def py_loop(op: Callable[[], int], n: int) -> tuple[int, list[int]]:
    value = 0
    for _ in range(PY_WARMUP):
        value = op()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        value = op()
        samples.append(clock() - t0)
    return value, samples


def series(value: int, samples: list[int]) -> dict[str, Any]:
    return {"value": value, "summary": stats.summarize_ns(samples), "samples_ns": samples}


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A measure that failed here is reported as such, with the reason, never as a number."""
    try:
        return fn()
    except (OSError, RuntimeError, subprocess.SubprocessError, TimeoutError) as err:
        return stats.not_measured(f"failed here: {err}")


def read_cost(bed: Bed, mech: Mechanism, n_c: int, n_py: int) -> dict[str, Any]:
    if mech.cloop is None or mech.python is None:
        return stats.not_measured(mech.missing)
    cloop, python = mech.cloop, mech.python
    return {
        "c": _attempt(lambda: series(*c_loop(bed.tools.readloop, cloop, n_c))),
        "py": _attempt(lambda: series(*py_loop(python, n_py))),
    }


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


def under_churn(bed: Bed, mechs: list[Mechanism], n_c: int) -> dict[str, Any]:
    """The C loop of each read mechanism while cgroups are made and removed beside the target."""
    out: dict[str, Any] = {}
    with churning(bed.tools.readloop, os.path.join(bed.layout.cgroup_root, "churn")):
        for m in mechs:
            cloop = m.cloop
            if cloop is None:
                out[m.key] = stats.not_measured(m.missing)
                continue
            out[m.key] = _attempt(lambda cloop=cloop: series(*c_loop(bed.tools.readloop, cloop, n_c)))  # type: ignore[misc]
    return out


# --- mkdir -> readable -----------------------------------------------------------------------------


@contextlib.contextmanager
def mirror_daemon(layout: Layout) -> Iterator[subprocess.Popen[bytes]]:
    """`bpffs-sync run` on the bed's bpffs, as its own process; stopped on exit."""
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, "BPFFS_SYNC_RUN_DIR": run_dir}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "--log-level", "warning", "run",
             "--bpffs", layout.bpffs, "--cgroup-root", layout.cgroup_root, "--resync-interval", "3600"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Ready once it mirrors a cgroup made after its start (the files are the contract).
        marker = os.path.join(layout.cgroup_root, "daemon-ready")
        os.mkdir(marker)
        try:
            wait_until(lambda: readable_file(layout.mirror_path(("daemon-ready", "hist_oncpu")))()
                       or proc.poll() is not None, 60, "report daemon start")
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


def first_read(ok: Callable[[], bool], timeout: float = 10.0) -> tuple[int, int]:
    """(ns until ok() first returned true, attempts); polls with 50 us pauses."""
    t0 = time.perf_counter_ns()
    attempts = 0
    while True:
        attempts += 1
        if ok():
            return time.perf_counter_ns() - t0, attempts
        if time.perf_counter_ns() - t0 > timeout * 1e9:
            raise TimeoutError(f"not readable after {timeout:g} s")
        time.sleep(50e-6)


def _readers_for(bed: Bed, cg: str, rel: str) -> dict[str, Callable[[], bool]]:
    """For a new cgroup `cg`: one "is it readable now" check per mechanism that names cgroups."""

    def cpu_stat() -> bool:
        with open(os.path.join(cg, "cpu.stat"), encoding="ascii") as f:
            return "usage_usec" in f.read()

    def prog_run() -> bool:
        ctx = (0).to_bytes(4, "little") * 2 + os.stat(cg).st_ino.to_bytes(8, "little") + bytes(8 + 232)
        ffi.prog_test_run_ctx(bed.prog_fd, ctx, "stat_by_id")
        return True  # found=0 is an answer: no slice charged yet

    def iter_per_read() -> bool:
        fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with ffi.attach_cgroup_iter(bed.loaded.reader, fd, cg) as link:
                return b"cgroup_id" in ffi.iter_read(link)
        finally:
            os.close(fd)

    return {"mirror_iter": readable_file(bed.layout.mirror_path((rel, "hist_oncpu"))), "cpu_stat": cpu_stat,
            "prog_run": prog_run, "iter_per_read": iter_per_read}


def mkdir_readable(bed: Bed, n: int) -> dict[str, Any]:
    """mkdir of a new cgroup, then poll each mechanism until it reads that cgroup. The mirror runs
    as a daemon process here (the way it is deployed)."""
    out: dict[str, dict[str, list[int]]] = {}
    parent = os.path.join(bed.layout.cgroup_root, "fresh")
    os.mkdir(parent)
    try:
        with mirror_daemon(bed.layout):
            wait_until(readable_file(bed.layout.mirror_path(("fresh", "hist_oncpu"))), 10, "fresh mirrored")
            for i in range(n):
                rel = f"c{i}"
                cg = os.path.join(parent, rel)
                os.mkdir(cg)
                readers = _readers_for(bed, cg, os.path.join("fresh", rel))
                for key, ok in readers.items():
                    took, attempts = first_read(ok)
                    entry = out.setdefault(key, {"ns": [], "attempts": []})
                    entry["ns"].append(took)
                    entry["attempts"].append(attempts)
            for i in range(n):
                os.rmdir(os.path.join(parent, f"c{i}"))
    finally:
        for name in os.listdir(parent):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    return {k: {"summary": stats.summarize_ns(v["ns"]), "samples_ns": v["ns"],
                "first_try": sum(1 for a in v["attempts"] if a == 1) / len(v["attempts"]),
                "attempts_max": max(v["attempts"])} for k, v in out.items()}


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
    return {
        "cgroups": n, "pins": pins, "first_pass_ns": pass_ns, "mkdir_ns": mkdir_ns,
        "ratio_vs_mkdir": stats.ratio(pass_ns, mkdir_ns),
        "per_cgroup_us": pass_ns / n / 1000,
        "probe_idle": {"summary": stats.summarize_ns(idle())} if idle() else
        stats.not_measured("prober made no sample"),
        "probe_during_pass": {"summary": stats.summarize_ns(busy())} if busy() else
        stats.not_measured("prober made no sample during the pass"),
        "slab_per_file_bytes": (slab1 - slab0) / max(pins, 1),
    }


def mkdir_cost(bed: Bed, n: int) -> dict[str, Any]:
    """mkdir then rmdir of n cgroups under the bed's root, with the mirror daemon running and
    without (same tree, same run): what running the user-space mirror adds to them."""
    def timed() -> tuple[int, int]:
        parent = os.path.join(bed.layout.cgroup_root, "cost")
        os.mkdir(parent)
        t0 = time.perf_counter_ns()
        made = make_tree(parent, n)
        t1 = time.perf_counter_ns()
        remove_tree(made)
        t2 = time.perf_counter_ns()
        os.rmdir(parent)
        return t1 - t0, t2 - t1

    plain_mk, plain_rm = timed()
    with mirror_daemon(bed.layout):
        mirr_mk, mirr_rm = timed()
    return {"cgroups": n, "mkdir_plain_ns": plain_mk, "rmdir_plain_ns": plain_rm,
            "mkdir_mirrored_ns": mirr_mk, "rmdir_mirrored_ns": mirr_rm,
            "mkdir_ratio": stats.ratio(mirr_mk, plain_mk), "rmdir_ratio": stats.ratio(mirr_rm, plain_rm)}


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
