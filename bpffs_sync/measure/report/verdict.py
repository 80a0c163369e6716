"""The verdict: each of the maintainer's points in the RFC thread, the number of this run that
answers it, and a recommendation that says where Approach 1 loses. Text is built from results;
a number that was not measured is said to be so."""

from __future__ import annotations

from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.render import Section, _a1, _lat, _nm, _p
from bpffs_sync.measure.report.stats import fmt_us


def _c(doc: dict[str, Any], key: str, q: str = "p50_us", table: str = "read") -> float | None:
    e = doc[table].get(key)
    return _p(e["c"], q) if stats.is_measured(e) and stats.is_measured(e.get("c")) else None


def _x(a: float | None, b: float | None) -> str:
    r = stats.ratio(a, b)
    return f"{r:.1f}x" if r is not None else "not measured"


def _u(v: float | None) -> str:
    return fmt_us(v) if v is not None else "not measured"


def _cell(doc: dict[str, Any], key: str, col: str) -> str:
    return str(doc["usability"]["rows"].get(key, {}).get(col, "not measured"))


def _efficiency(file: float | None, prog: float | None, cpu: float | None) -> str:
    r, c = stats.ratio(file, prog), stats.ratio(file, cpu)
    if r is None or c is None:
        return "not measured: a read row is missing"
    side = "true" if r > 2 else "not borne out"
    return (f"{side.capitalize()} in C: a formatted file read costs {r:.1f}x one BPF_PROG_RUN call, and "
            f"{c:.1f}x the cgroupfs cpu.stat read that such readers poll today.")


def verdict(doc: dict[str, Any]) -> Section:
    mirror, prog, cpu = _c(doc, "mirror_iter"), _c(doc, "prog_run"), _c(doc, "cpu_stat")
    mirror_py, prog_py = (_p(doc["read"][k]["py"]) if stats.is_measured(doc["read"].get(k)) else None
                          for k in ("mirror_iter", "prog_run"))
    churn = doc["churn"]
    m_churn = _p(churn.get("mirror_iter"), "p99_us")
    i_churn = _p(churn.get("iter_per_read"), "p99_us")
    p_churn = _p(churn.get("prog_run"), "p99_us")
    mk = doc["mkdir_readable"]
    a1 = _a1(doc)
    a1_read = _p(a1["read"]["c"]) if stats.is_measured(a1) else None
    a1_base = _p(a1["baseline_cpu_stat"]["c"]) if stats.is_measured(a1) else None
    a1_mk = a1.get("mkdir_readable") if stats.is_measured(a1) else None
    a1_first = f"{a1_mk['first_try'] * 100:.0f}% of first reads right after mkdir succeeded (guest)" \
        if a1_mk else _nm(a1)
    xs, xg, mu = (_c(doc, k, table="knobs") for k in ("xattr_set", "xattr_get", "map_update"))
    mirror_mk = mk.get("mirror_iter")
    rows = [
        ["\"a different and not-particularly-efficient way to communicate with BPF progs\"",
         f"C: stat file read {_u(mirror)} p50 vs BPF_PROG_RUN {_u(prog)} ({_x(mirror, prog)}) and cgroupfs "
         f"cpu.stat {_u(cpu)} ({_x(mirror, cpu)}). Python: {_u(mirror_py)} vs {_u(prog_py)} "
         f"({_x(mirror_py, prog_py)}). Approach 1 file vs cpu.stat in the guest: {_x(a1_read, a1_base)}.",
         _efficiency(mirror, prog, cpu)],
        ["\"wouldn't a pinned BPF_PROG_RUN program fit the bill?\"",
         f"Fastest read ({_u(prog)} C p50); cat: {_cell(doc, 'prog_run', 'cat / grep')}; unprivileged: "
         f"{_cell(doc, 'prog_run', 'unprivileged (uid 65534)')}; after rmdir: "
         f"{_cell(doc, 'prog_run', 'after rmdir')}.",
         "For programs, yes: it is faster and readable at mkdir. It needs libbpf and CAP_BPF-class rights, and no "
         "shell tool reads it."],
        ["\"for cgroup level low-freq hinting, being able to read xattrs on cgroupfs should be enough\"",
         f"xattr set {_u(xs)} / get {_u(xg)} vs pinned map update {_u(mu)} (C p50); unprivileged get: "
         f"{_cell(doc, 'xattr', 'unprivileged (uid 65534)')}; v1: {_cell(doc, 'xattr', 'cgroup v1')}. "
         "Approach 1 has no write mode.",
         "Agreed: for knobs xattrs are enough and Approach 1 loses (no write path, more kernel code)."],
        ["\"there will always be a latency between cgroups getting created and userspace going to pin\" "
         "(Josh) / \"the rationale seems pretty weak\"",
         f"user-space mirror: mkdir -> readable {_lat(mirror_mk, 'p50_us')} p50, {_lat(mirror_mk, 'p99_us')} p99; "
         f"Approach 1: {a1_first}.",
         "The lag is real for any user-space mirror and absent in-kernel: this is what only the kernel series fixes."],
        ["reads under cgroup churn (who takes cgroup_mutex on read)",
         f"p99 under mkdir/rmdir churn: mirror file {_u(m_churn)} ({_x(m_churn, _c(doc, 'mirror_iter', 'p99_us'))} "
         f"idle), per-read iterator {_u(i_churn)} ({_x(i_churn, _c(doc, 'iter_per_read', 'p99_us'))}), "
         f"BPF_PROG_RUN {_u(p_churn)} ({_x(p_churn, _c(doc, 'prog_run', 'p99_us'))}).",
         "Cgroup-iterator reads contend with mkdir/rmdir (cgroup_mutex in the seq start); map and BPF_PROG_RUN "
         "reads do not."],
    ]
    text = [
        "Recommendation, from these numbers: for programs that poll stats at high rate, a pinned BPF_PROG_RUN "
        "program or a pinned map is the cheaper read, and for per-cgroup knobs cgroupfs xattrs are enough; there "
        "Approach 1 loses. What only a kernel-kept file gives is a stat that exists the moment mkdir returns, can be "
        "read with cat/grep and by an unprivileged user with ordinary file permissions, and needs no daemon; the "
        "user-space mirror gets the text files but not the zero lag, and its reads take cgroup_mutex.",
    ]
    return Section("Verdict: the maintainer's points", text=text,
                   tables=[(["point (RFC thread)", "number from this run", "reading"], rows)])
