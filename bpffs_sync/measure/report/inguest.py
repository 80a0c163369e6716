"""The patched-kernel rows, measured inside one boot of the kernel carrying both series.

    python -m bpffs_sync.measure.report.inguest OUT.json [--quick]     (run by guest.run_guest)

Everything lands in OUT.json; a part that fails becomes {"not_measured": "in the guest: ..."}.
Progress lines go to $BPFFS_SYNC_GUEST_OUT/progress (the host shows the last one).

  knob         knob.py's measure (alone(): its own cgroups and bpffs), where Approach 1's knob
               file exists: the BPF-side read in sched_switch, the writes, who may write
  files        for each approach the image carries (a1: <bpffs>/cgroup/<path>/hist_oncpu,
               a2: <cgroup>/bpf.stat.hist_oncpu), one link on a private root: the file of a busy
               cgroup read by the C loop and a Python loop, the C loop under mkdir/rmdir churn,
               mkdir -> readable, and the usability checks (cat/grep, uid 65534, a v1 hierarchy,
               after rmdir, no loader process left)
  baseline     cgroupfs cpu.stat of the same cgroup, idle and under churn (same boot: the ratios)
  bench_a2     kernel-approach2/bench/bench_a2.py's measures and JSON (its functions, imported): link
               create over N cgroups (Approach 2's a cgroup_mutex hold), mkdir/rmdir under 0/1/4 links, the worst
               concurrent mkdir during link create, open+read+close, slab per file; A1 and A2 alike.
               The stall is measured here (_stall): bench_a2's probe makes its stop file in cgroupfs
               (EACCES: it never stops) and starts too late under TCG to see link create.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from bpffs_sync.measure import harness
from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.compiled import REPO, Tools

CGROUP2 = "/sys/fs/cgroup"
STAT = "hist_oncpu"
KEY = "total_ns"
BENCH_A2 = REPO / "kernel-approach2" / "bench" / "bench_a2.py"


@dataclass(frozen=True, slots=True)
class GuestPlan:
    n_c: int
    n_py: int
    n_mkdir: int
    sizes: tuple[int, ...]  # bench_a2 --sizes (populate curve; the largest also for stall and slab)
    rounds: int  # bench_a2 --rounds
    stock_c: int  # stock(): C operations per mechanism (split over STOCK_ROUNDS interleaved rounds)
    stock_py: int  # stock(): Python operations per mechanism
    stock_mkdir: int  # stock(): mkdir -> readable rounds (every mechanism once a round)
    stock_cost: int  # stock(): cgroups made and removed with and without the mirror daemon

    @classmethod
    def make(cls, mode: str) -> GuestPlan:
        """quick | full | trial (a proof that every part runs, in a few minutes of TCG)."""
        if mode == "trial":
            return cls(200, 50, 5, (100,), 20, 200, 50, 3, 40)
        if mode == "quick":
            return cls(2000, 300, 30, (100, 1000), 100, 1000, 200, 10, 100)
        if mode == "full":
            return cls(20000, 3000, 1000, (100, 1000, 10000), 1000, 10000, 2000, 100, 500)
        raise ValueError(f"unknown guest plan {mode!r} (quick, full, trial)")


def progress(msg: str) -> None:
    out = os.environ.get("BPFFS_SYNC_GUEST_OUT")
    if out:
        with contextlib.suppress(OSError), open(os.path.join(out, "progress"), "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%T')} {msg}\n")


def attempt(what: str, fn: Callable[[], Any]) -> Any:
    """fn(), or the reason it failed as a not-measured entry (the host renders the reason)."""
    progress(what)
    try:
        return fn()
    except Exception as err:  # every failure in the guest becomes the row's reason
        return stats.not_measured(f"in the guest, {what}: {type(err).__name__}: {err}"[:300])


# --- the approaches ------------------------------------------------------------------------------


class Approach:
    """One approach's link maker and file namer, over a bpffs mounted with cgroup_mirror."""

    def __init__(self, key: str, fs: str) -> None:
        from bpffs_sync.backends import kernel_a1, kernel_a2
        from bpffs_sync.paths import Layout
        from bpffs_sync.programs import lookup

        self.key, self.fs = key, fs
        layout = Layout(fs, CGROUP2)
        self._maker: Any = kernel_a1.KernelMirror(layout, lookup(STAT)) if key == "a1" else \
            kernel_a2.CgroupfsStat(layout, lookup(STAT))

    def attach(self, cgroup_dir: str) -> int:
        fd: int = self._maker.attach(cgroup_dir)
        return fd

    def file_of(self, cgroup_dir: str) -> str:
        from bpffs_sync.backends import kernel_a2

        if self.key == "a2":
            return os.path.join(cgroup_dir, kernel_a2.file_name(STAT))
        return os.path.join(self.fs, "cgroup", os.path.relpath(cgroup_dir, CGROUP2), STAT)

    def detach_all(self) -> None:
        from bpffs_sync.backends import kernel_a1, kernel_a2

        (kernel_a1 if self.key == "a1" else kernel_a2).detach_all()

    def close(self) -> None:
        self._maker.close()


def carried() -> list[str]:
    """The approaches the running kernel carries (feature probes on its BTF)."""
    from bpffs_sync.backends import kernel_a1, kernel_a2

    return [k for k, ok in (("a1", kernel_a1.supported()), ("a2", kernel_a2.supported())) if ok]


@contextlib.contextmanager
def linked(ap: Approach, cgroup_dir: str) -> Iterator[int]:
    fd = ap.attach(cgroup_dir)
    try:
        yield fd
    finally:
        os.close(fd)
        ap.detach_all()


# --- measures ------------------------------------------------------------------------------------


def _parse(path: str, key: str = KEY) -> Callable[[], int]:
    """open + read + parse one figure: `key: N` (the stat files) or `key N` (cpu.stat)."""
    def read() -> int:
        with open(path, encoding="utf-8") as f:
            words = f.read().replace(":", " ").split()
        return int(words[words.index(key) + 1])
    return read


def mkdir_readable(ap: Approach, root: str, n: int) -> dict[str, Any]:
    """mkdir, then read the new cgroup's file at once (polling every 50 us if it is not there); the
    clock starts when mkdir returns; success as measures.READABLE defines it."""
    from bpffs_sync.measure.report import measures

    tries = []
    for i in range(n):
        cg = os.path.join(root, f"fresh{i}")
        os.mkdir(cg)
        t0 = time.perf_counter_ns()
        tries.append(measures.first_read(measures.readable_file(ap.file_of(cg)), t0))
        os.rmdir(cg)
    return measures.readable_summary(tries) | {"definition": measures.READABLE}


def after_rmdir(ap: Approach, root: str) -> str:
    """A reader holding the file open, and one opening it by name, after the cgroup is removed."""
    cg = os.path.join(root, "gone")
    os.mkdir(cg)
    path = ap.file_of(cg)
    fd = os.open(path, os.O_RDONLY)
    os.rmdir(cg)
    try:
        try:
            held = f"a held fd reads {len(os.pread(fd, 4096, 0))} bytes"
        except OSError as err:
            held = f"a held fd gets {os.strerror(err.errno or 0)}"
        by_name = "the name still opens" if os.path.exists(path) else "the name is gone (ENOENT)"
        return f"gone with the cgroup: {by_name}; {held}"
    finally:
        os.close(fd)


LOADER = """
import sys
from bpffs_sync.backends import kernel_a1, kernel_a2
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
fs, root, key = sys.argv[1:4]
mod = kernel_a1.KernelMirror if key == "a1" else kernel_a2.CgroupfsStat
with mod(Layout(fs, "/sys/fs/cgroup"), lookup("hist_oncpu")) as m:
    m.ensure_link(root)
"""


def no_loader(ap: Approach, root: str) -> str:
    """A loader process pins the link and exits; is a cgroup made afterwards covered at once?"""
    proc = subprocess.run([sys.executable, "-c", LOADER, ap.fs, root, ap.key], capture_output=True, text=True,
                          check=False, timeout=600)
    if proc.returncode != 0:
        return f"not measured: the loader failed ({(proc.stderr.strip().splitlines() or ['?'])[-1][:100]})"
    late = os.path.join(root, "after-loader")
    os.mkdir(late)
    try:
        ok = os.path.isfile(ap.file_of(late))
    finally:
        os.rmdir(late)
        ap.detach_all()
    return ("n/a: no daemon: the loader exited and a cgroup made afterwards had its file when mkdir returned"
            if ok else "no: a cgroup made after the loader exited has no file")


def v1_cell(ap: Approach, tools: Tools) -> str:
    """A link on a cgroup of a named v1 hierarchy mounted for this check."""
    from bpffs_sync.measure.report.usability import cat_grep

    mnt = tempfile.mkdtemp(prefix="bpffs-sync-report-v1-")
    subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=bpffs_sync_report", "cgroup", mnt], check=True)
    cg = os.path.join(mnt, "job")
    try:
        os.mkdir(cg)
        try:
            fd = ap.attach(cg)
        except Exception as err:
            return f"no: link create on a v1 cgroup: {err}"[:160]
        try:
            if ap.key == "a2":
                return "yes (named v1 hierarchy): " + cat_grep(ap.file_of(cg), KEY)
            found = [os.path.join(d, f) for d, _, fs in os.walk(ap.fs) if "cgroup-v1" in d for f in fs if f == STAT]
            return f"yes: {found[0]} made" if found else \
                "no: link created on the v1 cgroup, but no file under <bpffs>/cgroup-v1/"
        finally:
            os.close(fd)
            ap.detach_all()
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(cg)
        subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)


def usability(ap: Approach, tools: Tools, root: str, busy_file: str) -> dict[str, str]:
    from bpffs_sync.measure.report.usability import cat_grep, unprivileged

    def cell(what: str, fn: Callable[[], str]) -> str:
        try:
            return fn()
        except Exception as err:
            return f"not measured: {what} failed in the guest: {type(err).__name__}: {err}"[:160]

    return {"cat / grep": cell("cat", lambda: cat_grep(busy_file, KEY)),
            "unprivileged (uid 65534)": cell("uid 65534", lambda: unprivileged(tools.readloop, ["file", busy_file,
                                                                                               KEY])),
            "after rmdir": cell("rmdir", lambda: after_rmdir(ap, root)),
            "cgroup v1": "",  # filled after the link is gone (v1_cell makes its own)
            "daemon crash": ""}


READ_ROUNDS = 5  # the guest's read rounds: cpu.stat and the approaches' files in a seeded shuffled order


def interleaved_reads(tools: Tools, plan: GuestPlan, aps: list[Approach], *, root: str, busy: str,
                      churn_dir: str, seed: int | None = None) -> dict[str, Any]:
    """cpu.stat and every approach's file on the busy cgroup, read with every approach linked at once,
    in READ_ROUNDS rounds whose order is a seeded shuffle; then the C loop of each again under churn,
    interleaved the same way. {"cpu_stat"|key: {"c", "py", "churn"}, "order": {seed, read, churn}}."""
    from bpffs_sync.measure.report import measures
    from bpffs_sync.measure.report.mechanisms import Mechanism

    seed = secrets.randbits(32) if seed is None else seed
    with contextlib.ExitStack() as links:
        for ap in aps:
            links.enter_context(linked(ap, root))
        targets = {"cpu_stat": (os.path.join(busy, "cpu.stat"), "usage_usec"),
                   **{ap.key: (ap.file_of(busy), KEY) for ap in aps}}
        mechs = [Mechanism(k, k, "read", key, _parse(path, key), ["file", path, key])
                 for k, (path, key) in targets.items()]
        keys = [m.key for m in mechs]
        orders = {"read": measures.round_orders(keys, READ_ROUNDS, seed),
                  "churn": measures.round_orders(keys, READ_ROUNDS, seed + 1)}
        share = plan.n_py / plan.n_c

        def both(m: Mechanism, k: int) -> dict[str, Any]:
            assert m.cloop is not None and m.python is not None
            return {"c": measures.series(*measures.c_loop(tools.readloop, m.cloop, k)),
                    "py": measures.series(*measures.py_loop(m.python, max(1, round(k * share))))}

        def c_only(m: Mechanism, k: int) -> dict[str, Any]:
            assert m.cloop is not None
            return {"c": measures.series(*measures.c_loop(tools.readloop, m.cloop, k))}

        out: dict[str, Any] = measures.interleaved(mechs, orders["read"], both, plan.n_c)
        with measures.churning(tools.readloop, churn_dir):
            churn = measures.interleaved(mechs, orders["churn"], c_only, plan.n_c)
    for k in keys:
        out[k]["churn"] = churn[k]["c"]
    out["order"] = {"seed": seed, **orders}
    return out


def files(tools: Tools, plan: GuestPlan, keys: list[str], seed: int | None = None) -> dict[str, Any]:
    """The file rows of each carried approach, and the cpu.stat baseline, on one busy cgroup (seed: of
    the interleaved reads' orders)."""
    from bpffs_sync.measure.report.bed import burn
    from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

    fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("bpffs-sync-report")
    out: dict[str, Any] = {}
    aps = [Approach(k, fs) for k in keys]
    try:
        busy = os.path.join(root, "busy")
        os.mkdir(busy)
        burn([busy], 0.3)
        churn_dir = os.path.join(root, "churn")
        progress("reads: cpu.stat and every approach's file, interleaved")
        got = attempt("reads (interleaved)", lambda: interleaved_reads(tools, plan, aps, root=root, busy=busy,
                                                                                churn_dir=churn_dir, seed=seed))
        if not stats.is_measured(got):
            return {"baseline_cpu_stat": got, **{f"{ap.key}_file": got for ap in aps}}
        out["baseline_cpu_stat"] = got["cpu_stat"]
        out["read_order"] = got["order"]
        for ap in aps:
            def one(ap: Approach = ap) -> dict[str, Any]:
                row: dict[str, Any] = {}
                with linked(ap, root):
                    path = ap.file_of(busy)
                    row["file"] = path
                    row["read"] = {k: got[ap.key][k] for k in ("c", "py")}
                    row["churn"] = got[ap.key]["churn"]
                    row["mkdir_readable"] = mkdir_readable(ap, root, plan.n_mkdir)
                    row["usability"] = usability(ap, tools, root, path)
                u = row["usability"]
                u["cgroup v1"] = attempt(f"{ap.key}: v1", lambda: v1_cell(ap, tools))
                u["daemon crash"] = attempt(f"{ap.key}: no loader", lambda: no_loader(ap, root))
                for col, v in u.items():
                    if isinstance(v, dict):
                        u[col] = f"not measured: {v['not_measured']}"
                return row
            out[f"{ap.key}_file"] = attempt(f"{ap.key}: file rows", one)
    finally:
        for ap in aps:
            with contextlib.suppress(Exception):
                ap.detach_all()
            ap.close()
        remove_cgroup_tree(root, timeout=60)
        umount_bpffs(fs)
    return out


# --- every other mechanism, in the same boot ---------------------------------------------------------


STOCK_ROUNDS = 5  # the interleaved rounds of stock()'s reads (measures.round_orders)
DAEMON_START_S = 600.0  # the mirror daemon's start-up limit in the guest (measures.DAEMON_START_S: 60 on the host)
NETLINK_V1 = "bpffs_sync_report_nl"  # the named v1 hierarchy taskstats reads here (v2 owns the controllers)


@contextlib.contextmanager
def named_v1_cgroup() -> Iterator[str]:
    """A cgroup of a named cgroup-v1 hierarchy mounted for this (taskstats' CGROUPSTATS only takes a
    v1 directory; the guest has cgroup2 alone), holding a task asleep in a pipe read (one that
    CGROUPSTATS counts: netlink_check.py)."""
    from bpffs_sync.measure.report.netlink_check import enter_cgroup

    mnt = tempfile.mkdtemp(prefix="bpffs-sync-report-nl-")
    subprocess.run(["mount", "-t", "cgroup", "-o", f"none,name={NETLINK_V1}", "cgroup", mnt], check=True)
    cg = os.path.join(mnt, "busy")
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.mkdir(cg)
        proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                preexec_fn=lambda: enter_cgroup(cg))  # noqa: PLW1509
        yield cg
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
            if proc.stdin is not None:
                proc.stdin.close()
        for _ in range(100):
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
        # lazily: the netlink reader's directory fd lives as long as its process
        subprocess.run(["umount", "-l", mnt], check=False)
        os.rmdir(mnt)


def _bytes_of(path: str) -> Callable[[], bytes]:
    def op() -> bytes:
        with open(path, "rb") as f:
            return f.read()
    return op


FILE_LABELS = {"a1": "Approach 1 file <bpffs>/cgroup/<path>/hist_oncpu, read whole",
               "a2": "Approach 2 file <cgroup>/bpf.stat.hist_oncpu, read whole"}


def stock(tools: Tools, plan: GuestPlan, keys: list[str], seed: int, *, doc: dict[str, Any] | None = None,
          saved: Callable[[], None] | None = None) -> dict[str, Any]:
    """Every mechanism the host measures, measured in this boot by the host's own code (bed.open_bed,
    mechanisms, equal, measures) on a bed in the guest, beside the approaches' files of the same busy
    cgroup in the same interleaved rounds (round_orders, seeds recorded in "order"):
      read / breakdown / knobs / churn   as the runner's steps of those names, every read mechanism
               plus "a1_file" / "a2_file" (each approach linked on the bed's cgroup root, on a bpffs
               mounted with cgroup_mirror), with the user-space mirror running as its daemon
               (`bpffs-sync run --user-space` on the bed's bpffs: mirror_iter is the daemon's file);
      equal_work   equal.run on the bed (the approaches' files print the same program's text from
               their own maps: the same format, not the same bytes, so they are not in the check);
      netlink  on a named v1 hierarchy (netlink_check's sleeper), and netlink_check.check there;
      mkdir_readable / mkdir_cost   the runner's, links gone (each starts its own daemon).
    doc: filled in place, saved() called after each part (a boot stopped by its timeout keeps them)."""
    from bpffs_sync.measure.report import equal, measures, netlink_check
    from bpffs_sync.measure.report.bed import burn, open_bed
    from bpffs_sync.measure.report.mechanisms import (
        Mechanism,
        churned,
        knob_mechanisms,
        netlink_reader,
        read_mechanisms,
    )
    from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

    doc = {} if doc is None else doc  # filled in place: saved() after each part keeps what is done

    def part(name: str, what: str, fn: Callable[[], Any]) -> None:
        doc[name] = attempt(what, fn)
        if saved is not None:
            saved()

    measures.DAEMON_START_S = DAEMON_START_S  # this process is the guest's: every daemon start here is emulated
    with open_bed(tools) as bed:
        with contextlib.ExitStack() as stack:
            nl = stack.enter_context(named_v1_cgroup())
            doc["netlink_v1_cgroup"] = nl  # on its named hierarchy, mounted for this part only
            nl_label = "netlink CGROUPSTATS (taskstats, pyroute2), on a named v1 hierarchy"
            reads = [Mechanism("netlink", nl_label, "read", "task-state counts (v1)", netlink_reader(nl),
                               ["netlink", nl]) if m.key == "netlink" else m for m in read_mechanisms(bed)]
            knobs = knob_mechanisms(bed)
            fs = mount_bpffs("cgroup_mirror")
            stack.callback(umount_bpffs, fs)
            files, doc["files"] = [], {}
            for key in keys:
                def link(key: str = key) -> str:
                    ap = Approach(key, fs)
                    stack.callback(ap.close)
                    stack.enter_context(linked(ap, bed.layout.cgroup_root))
                    return ap.file_of(bed.target)
                path = attempt(f"stock: {key} link on the bed", link)
                doc["files"][key] = path  # its file of the busy cgroup, or why there is none
                if isinstance(path, str):
                    files.append(Mechanism(f"{key}_file", FILE_LABELS[key], "read",
                                           "hist_oncpu, full text (its own map)", _bytes_of(path), ["text", path]))
            burn([bed.target], 0.3)  # after the links: every approach's map has the busy cgroup's entry
            progress("stock: mirror daemon")
            try:  # its start under TCG: Python and the BPF load, emulated (minutes on a loaded host)
                daemon = stack.enter_context(measures.mirror_daemon(bed.layout))
                doc["mirror_daemon"] = f"running during the reads (pid {daemon.pid}): mirror_iter is its file"
            except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as err:
                doc["mirror_daemon"] = stats.not_measured(f"the daemon did not start ({err}); mirror_iter is the "
                                                          "bed's pin, made by one Reconciler pass")
            mechs = [*reads, *files]
            doc["mechanisms"] = [{"key": m.key, "label": m.label, "kind": m.kind, "what": m.what,
                                  "missing": m.missing, "variant": m.variant} for m in [*mechs, *knobs]]
            routed = [m for m in mechs if m.variant or m.key == "cpu_stat" or m in files]
            orders = {what: measures.round_orders([m.key for m in ms], STOCK_ROUNDS, seed + i) for i, (what, ms) in
                      enumerate((("read", mechs), ("knobs", knobs), ("churn", [*churned(reads), *files]),
                                 ("breakdown", routed)))}
            part("netlink_check", "stock: netlink check", lambda: netlink_check.check(nl))
            part("equal_work", "stock: equal work", lambda: equal.run(bed, reads))
            part("read", "stock: reads (interleaved)", lambda: measures.read_costs(
                bed, mechs, plan.stock_c, plan.stock_py, orders["read"]))
            part("breakdown", "stock: per-syscall breakdown", lambda: measures.breakdown(
                bed, routed, max(1, plan.stock_c // 4), orders["breakdown"]))
            part("knobs", "stock: knobs (interleaved)", lambda: measures.read_costs(
                bed, knobs, plan.stock_c, plan.stock_py, orders["knobs"]))
            part("churn", "stock: under churn", lambda: measures.under_churn(
                bed, [*churned(reads), *files], plan.stock_c, orders["churn"]))
        mk_orders = measures.round_orders(measures.MKDIR_KEYS, plan.stock_mkdir, seed + 4)
        doc["order"] = {"seed": seed, "rounds": orders, "mkdir_readable": mk_orders}
        part("mkdir_readable", "stock: mkdir -> readable", lambda: measures.mkdir_readable(bed, mk_orders))
        # one round (without and with the daemon, in a seeded order): each daemon start costs minutes under TCG
        part("mkdir_cost", "stock: mkdir/rmdir cost", lambda: measures.mkdir_cost(
            bed, plan.stock_cost, 1, seed + 5))
    return doc


def _load_bench_a2() -> Any:
    spec = importlib.util.spec_from_file_location("bench_a2", BENCH_A2)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {BENCH_A2}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRIES = 5


def _stall(b: Any, ap: Any, readloop: str, root: str, n: int) -> dict[str, Any]:
    """bench_a2.bench_stall's figure (the worst mkdir of another process while a link is created over
    n cgroups, vs its worst when idle) and JSON shape, measured so that it means something here:
    bench_a2's probe makes its stop file in cgroupfs (EACCES: it never stops) and, a Python process
    still starting under TCG, missed the whole link create. Here the probe is readloop's C mkdirts on
    CPU 1 (harness.stall_probe, "readloop"), link create runs on CPU 0, and only the probe's mkdirs in
    flight during link create count.
    Single-threaded TCG runs one vCPU at a time, so one create may meet few or no probe mkdirs: the
    worst is taken over TRIES creates, and none overlapping is said so, not shown as a number."""
    cpus = os.sched_getaffinity(0)
    harness.on_cpu(0)()
    sub, elsewhere = os.path.join(root, "stall"), os.path.join(root, "elsewhere")
    os.mkdir(sub)
    os.mkdir(elsewhere)
    made = harness.make_tree(sub, n)
    try:
        with harness.stall_probe(elsewhere, "readloop", readloop=readloop, cpu=1) as idle:
            time.sleep(0.5)
        idle_ns = [s.latency_ns for s in idle]
        out: dict[str, Any] = {"cgroups": n + 1, "idle_worst_ms": max(idle_ns) / 1e6,
                               "idle_samples": len(idle), "idle_samples_ns": idle_ns, "probe_cpu": 1,
                               "link_create_cpu": 0}
        for approach in ("a1", "a2"):
            during: list[int] = []
            seen = 0
            for _ in range(TRIES):
                with harness.stall_probe(elsewhere, "readloop", readloop=readloop, cpu=1) as samples:
                    t0 = time.monotonic_ns()
                    fd = ap.attach(approach, sub)
                    window = (t0, time.monotonic_ns())
                    time.sleep(0.05)
                b.libbpf.link_detach(fd)
                os.close(fd)
                these = harness.overlapping(samples, window)
                seen += bool(these)
                during += these
            out[f"{approach}_tries"], out[f"{approach}_tries_overlapped"] = TRIES, seen
            if during:
                out[f"{approach}_worst_ms"] = max(during) / 1e6
                out[f"{approach}_overlapping"] = len(during)
                out[f"{approach}_samples_ns"] = during
                out[f"{approach}_vs_idle"] = out[f"{approach}_worst_ms"] / out["idle_worst_ms"]
            else:
                out[f"{approach}_why"] = (f"no probe mkdir was in flight during any of {TRIES} link creates "
                                          "(single-threaded TCG ran the other vCPU elsewhere)")
    finally:
        os.sched_setaffinity(0, cpus)
        harness.remove_tree(made)
        os.rmdir(sub)
        os.rmdir(elsewhere)
    return out


MKDIR_SUBROUNDS = 5  # the rounds of _mkdir_cost: conditions interleaved in a seeded shuffled order


def _mkdir_cost(linked: Callable[[str, str, list[str]], Any], root: str, rounds: int, seed: int) -> dict[str, Any]:
    """bench_a2.bench_mkdir's figures and JSON shape (mkdir and rmdir of one cgroup under 0, 1 and 4
    links of each approach, medians), keeping every sample (samples_ns) so the host can put intervals
    on them, and interleaving the conditions: MKDIR_SUBROUNDS rounds, each running every condition in
    a seeded shuffled order (order). linked(approach, dir, names) is bench_a2.linked bound to its
    Approaches."""
    from bpffs_sync.measure.report import measures

    top = os.path.join(root, "mk")
    leaf = os.path.join(top, "leaf")
    os.makedirs(leaf)
    target = os.path.join(leaf, "x.scope")
    conds = ["none", "a1:1", "a2:1", "a1:4", "a2:4"]
    orders = measures.round_orders(conds, MKDIR_SUBROUNDS, seed)
    got: dict[str, dict[str, list[int]]] = {c: {"mkdir": [], "rmdir": []} for c in conds}
    clock = time.perf_counter_ns
    try:
        for order, count in zip(orders, measures.split(rounds, MKDIR_SUBROUNDS), strict=True):
            for cond in order:
                approach, _, nlinks = cond.partition(":")
                ctx = contextlib.nullcontext() if cond == "none" else \
                    linked(approach, top, [f"l{i}" for i in range(int(nlinks))])
                with ctx:
                    for _ in range(count):
                        t0 = clock()
                        os.mkdir(target)
                        t1 = clock()
                        os.rmdir(target)
                        got[cond]["mkdir"].append(t1 - t0)
                        got[cond]["rmdir"].append(clock() - t1)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(target)
        os.rmdir(leaf)
        os.rmdir(top)

    return mkdir_summary(got, rounds) | {"order": orders, "seed": seed}


def mkdir_summary(got: dict[str, dict[str, list[int]]], rounds: int) -> dict[str, Any]:
    """_mkdir_cost's figures from its samples (condition -> mkdir|rmdir -> ns): medians in us, each
    condition against none, A2 against A1 (also run on the samples pooled over boots)."""
    def med_us(v: list[int]) -> float:
        return float(stats.percentile(v, 0.5)) / 1e3

    out: dict[str, Any] = {"rounds": rounds, "none_mkdir_us": med_us(got["none"]["mkdir"]),
                           "none_rmdir_us": med_us(got["none"]["rmdir"]), "samples_ns": got}
    for nlinks in ("1", "4"):
        row: dict[str, Any] = {}
        for approach in ("a1", "a2"):
            for op in ("mkdir", "rmdir"):
                row[f"{approach}_{op}_us"] = med_us(got[f"{approach}:{nlinks}"][op])
                row[f"{approach}_{op}_vs_none"] = row[f"{approach}_{op}_us"] / out[f"none_{op}_us"]
        row["mkdir_ratio_a2_a1"] = row["a2_mkdir_us"] / row["a1_mkdir_us"]
        row["rmdir_ratio_a2_a1"] = row["a2_rmdir_us"] / row["a1_rmdir_us"]
        out[nlinks] = row
    return out


def bench_a2(plan: GuestPlan, tools: Tools, out_dir: str, seed: int | None = None) -> dict[str, Any]:
    """kernel-approach2/bench/bench_a2.py's measures and JSON shape (its main() with this plan's
    sizes): its functions are called as they are, except the stall (_stall) and mkdir/rmdir under
    links (_mkdir_cost, which keeps the samples and interleaves the conditions). Each part
    that fails is that part's not_measured entry."""
    from bpffs_sync.backends import kernel_a1, kernel_a2
    from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

    b = _load_bench_a2()
    sizes = list(plan.sizes)
    fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("bench-a2")
    ap = b.Approaches(fs)
    doc: dict[str, Any] = {"kernel": platform.release(), "unit_note": "TCG guest: read the ratios"}
    mk_seed = secrets.randbits(32) if seed is None else seed
    try:
        doc["link_create"] = attempt("bench_a2: link create", lambda: b.bench_link_create(ap, root, sizes))
        doc["mkdir"] = attempt("bench_a2: mkdir/rmdir under links", lambda: _mkdir_cost(
            lambda approach, d, names: b.linked(ap, approach, d, names), root, plan.rounds, mk_seed))
        doc["stall"] = attempt("bench_a2: stall", lambda: _stall(b, ap, tools.readloop, root, max(sizes)))
        doc["read"] = attempt("bench_a2: read", lambda: b.bench_read(ap, root, plan.rounds))
        doc["slab_per_file"] = attempt("bench_a2: slab", lambda: b.bench_slab(ap, root, max(sizes)))
    finally:
        kernel_a2.detach_all()
        kernel_a1.detach_all()
        ap.close()
        remove_cgroup_tree(root, timeout=60)
        umount_bpffs(fs)
    with open(os.path.join(out_dir, "bench_a2.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    return doc


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def guest_main(out: str, mode: str, seed: int | None = None) -> int:
    from bpffs_sync.measure.report import compiled, knob

    started = time.monotonic()
    plan = GuestPlan.make(mode)
    seed = secrets.randbits(32) if seed is None else seed
    keys = carried()
    doc: dict[str, Any] = {"kernel": platform.release(), "version": platform.version(), "cpu": _cpu_model(),
                           "cpus": os.cpu_count() or 0, "date": time.strftime("%F %T %z"), "carries": keys,
                           "plan": asdict(plan) | {"mode": mode}, "seed": seed}
    doc["incomplete"] = "the guest stopped during the file rows"  # each part's end rewrites OUT (save())

    def save(next_part: str | None) -> None:
        """OUT as it stands: a guest stopped by its timeout still leaves the parts it finished."""
        if next_part is None:
            doc.pop("incomplete", None)
        else:
            doc["incomplete"] = f"the guest stopped during {next_part}"
        doc["guest_run_s"] = time.monotonic() - started
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(out + ".tmp", out)

    tools = compiled.build()
    save("the file rows")
    if keys:
        rows = attempt("file rows", lambda: files(tools, plan, keys, seed + 10))
        doc.update(rows if stats.is_measured(rows) else {f"{k}_file": rows for k in keys})
    save("the knob measure")
    doc["knob"] = attempt("knob", lambda: knob.alone(tools.readloop, n_read=max(1, plan.stock_c // 2),
                                                     n_write=max(1, plan.stock_c // 5), rounds=STOCK_ROUNDS,
                                                     seed=seed + 7))
    save("the stock rows")
    partial: dict[str, Any] = {}
    doc["stock"] = partial
    got = attempt("stock rows", lambda: stock(tools, plan, keys, seed, doc=partial,
                                                     saved=lambda: save("the stock rows")))
    if not stats.is_measured(got):  # set-up failed (the bed, a mount): the parts done so far are kept
        doc["stock"] = partial | {"failed": got["not_measured"]} if partial else got
    save("bench_a2")
    if keys == ["a1", "a2"]:
        doc["bench_a2"] = attempt("bench_a2", lambda: bench_a2(plan, tools, os.path.dirname(os.path.abspath(out)),
                                                               seed + 20))
    else:
        doc["bench_a2"] = stats.not_measured("the booted kernel does not carry both series (bench_a2 needs both)")
    save(None)
    progress("done")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="report: the patched-kernel rows, inside the guest")
    ap.add_argument("out")
    ap.add_argument("--quick", action="store_true", help="the quick plan (same as --plan quick)")
    ap.add_argument("--plan", choices=("quick", "full", "trial"), default=None)
    ap.add_argument("--seed", type=int, default=None, help="of the interleaved orders (recorded)")
    args = ap.parse_args(argv)
    return guest_main(args.out, args.plan or ("quick" if args.quick else "full"), args.seed)


if __name__ == "__main__":
    sys.exit(main())
