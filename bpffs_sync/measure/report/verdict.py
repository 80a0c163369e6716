"""The verdict: each of the maintainer's points in the RFC thread, the number of this run that
answers it, and a recommendation that says where Approach 1 loses. Every sentence that states a
finding is chosen by comparing this run's numbers (figures()); a number that was not measured is
said to be so, and the reading then says it cannot tell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.render import Section, _bench, _bench_part, _file, _gbase, _nm, _p
from bpffs_sync.measure.report.stats import fmt_us

TIE = 0.10  # within 10 %: neither approach wins that comparison


def _c(doc: dict[str, Any], key: str, q: str = "p50_us", table: str = "read") -> float | None:
    e = doc[table].get(key)
    return _p(e["c"], q) if stats.is_measured(e) and stats.is_measured(e.get("c")) else None


def _py(doc: dict[str, Any], key: str) -> float | None:
    e = doc["read"].get(key)
    return _p(e["py"]) if stats.is_measured(e) and stats.is_measured(e.get("py")) else None


def _churn_x(churn: Any, idle: Any) -> float | None:
    return stats.ratio(_p(churn, "p99_us"), _p(idle, "p99_us"))


def _cell(doc: dict[str, Any], key: str, col: str) -> str:
    return str(doc["usability"]["rows"].get(key, {}).get(col, "not measured"))


def _yes(cell: str) -> bool:
    return cell.startswith(("yes", "n/a: no daemon: the loader exited"))


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


@dataclass(slots=True)
class Approach:
    """One kernel series' figures from the guest boot (None: not measured)."""

    read: float | None = None  # C p50, us
    read_x_cpu: float | None = None  # vs cpu.stat in the same boot
    churn_x: float | None = None  # p99 under churn / idle p99
    first_try: float | None = None  # share of first reads right after mkdir that succeeded
    mkdirs: int = 0
    hold_s: float | None = None  # link create over the largest tree
    hold_x_mkdir: float | None = None  # per cgroup, vs one mkdir of the same boot
    stall_x: float | None = None  # worst concurrent mkdir during link create vs idle
    mkdir_x: float | None = None  # mkdir under 1 link vs none
    rmdir_x: float | None = None
    slab: float | None = None  # bytes per file
    loc: float | None = None  # kernel lines of the series
    cells: dict[str, str] | None = None  # usability cells


def approach(doc: dict[str, Any], key: str) -> Approach:
    f, b, g = _file(doc, key), _bench(doc), _gbase(doc)
    a = Approach()
    if stats.is_measured(f):
        a.read = _p(f["read"]["c"])
        a.read_x_cpu = stats.ratio(a.read, _p(g["c"]) if stats.is_measured(g) else None)
        a.churn_x = _churn_x(f.get("churn"), f["read"]["c"])
        mk = f.get("mkdir_readable", {})
        a.first_try, a.mkdirs = mk.get("first_try"), int(_get(mk, "summary", "n") or 0)
        a.cells = f.get("usability")
    if stats.is_measured(b):
        lc = _bench_part(doc, "link_create")
        sizes = sorted(int(n) for n in lc) if stats.is_measured(lc) else []
        if sizes:
            row = lc[str(sizes[-1])]
            a.hold_s = row[f"{key}_s"]
            a.hold_x_mkdir = stats.ratio(row[f"{key}_us_per_cgroup"], _get(b, "mkdir", "none_mkdir_us"))
        a.stall_x = _get(b, "stall", f"{key}_vs_idle")
        a.mkdir_x = _get(b, "mkdir", "1", f"{key}_mkdir_vs_none")
        a.rmdir_x = _get(b, "mkdir", "1", f"{key}_rmdir_vs_none")
        a.slab = _get(b, "slab_per_file", f"{key}_bytes_per_file")
    loc = doc.get("loc", {}).get(f"{key}_file")
    a.loc = loc["kernel"] if stats.is_measured(loc) else None
    return a


def _u(v: float | None) -> str:
    return fmt_us(v) if v is not None else "not measured"


def _x(v: float | None) -> str:
    if v is None:
        return "not measured"
    return f"{v:.2f}x" if v < 1 else f"{v:.1f}x"


def _pct(v: float | None, n: int = 0) -> str:
    return f"{v * 100:.0f}%" + (f" of {n}" if n else "") if v is not None else "not measured"


def compare(a1: Approach, a2: Approach) -> list[tuple[str, str, str]]:
    """(what, A1, A2) -> who wins each measured comparison: [(what, winner 'a1'|'a2'|'tie', detail)]."""
    out = []
    lower_better = [("read cost (C p50, same boot)", a1.read, a2.read, _u),
                    ("link create time (A2's is a cgroup_mutex hold, A1's walk holds none)", a1.hold_s, a2.hold_s,
                     lambda v: f"{v * 1e3:.0f} ms"),
                    ("stall of a concurrent mkdir during link create", a1.stall_x, a2.stall_x, _x),
                    ("mkdir under one link", a1.mkdir_x, a2.mkdir_x, _x),
                    ("rmdir under one link", a1.rmdir_x, a2.rmdir_x, _x),
                    ("slab per file", a1.slab, a2.slab, lambda v: f"{v:.0f} B"),
                    ("kernel lines", a1.loc, a2.loc, lambda v: f"{v:.0f}")]
    for what, v1, v2, fmt in lower_better:
        if v1 is None or v2 is None or v1 <= 0 or v2 <= 0:
            continue
        r = v2 / v1
        win = "tie" if abs(r - 1) <= TIE else ("a2" if r < 1 else "a1")
        out.append((what, win, f"A1 {fmt(v1)}, A2 {fmt(v2)}"))
    if a1.cells and a2.cells:
        y1, y2 = _yes(a1.cells.get("cgroup v1", "")), _yes(a2.cells.get("cgroup v1", ""))
        if y1 != y2:
            out.append(("cgroup v1 hierarchies", "a1" if y1 else "a2",
                        f"a link on a named v1 hierarchy: A1 {'yes' if y1 else 'no'}, A2 {'yes' if y2 else 'no'}"))
    return out


def recommendation(doc: dict[str, Any], a1: Approach, a2: Approach) -> list[str]:
    mirror, prog, mapr = _c(doc, "mirror_iter"), _c(doc, "prog_run"), _c(doc, "map_lookup")
    fast = min((v for v in (prog, mapr) if v is not None), default=None)
    out = []
    if fast is not None and mirror is not None:
        out.append(f"Reads by programs: a pinned BPF_PROG_RUN program or map lookup costs {_u(fast)} (C p50, host), "
                   f"a stat file {_u(mirror)} ({mirror / fast:.0f}x). For high-rate consumers the maintainer is "
                   "right and every file-based approach, Approach 1 included, loses.")
    xs, mu = _c(doc, "xattr_set", table="knobs"), _c(doc, "map_update", table="knobs")
    out.append(f"Knobs: a cgroupfs user.* xattr set costs {_u(xs)} vs a map update {_u(mu)}, needs no kernel code, "
               "and neither series has a write mode: for low-frequency hints xattrs are enough; Approach 1 (and 2) "
               "lose there today.")
    mk = doc["mkdir_readable"].get("mirror_iter")
    lagged = stats.is_measured(mk) and mk.get("first_try", 1) < 1
    kernel_ok = [k for k, a in (("1", a1), ("2", a2)) if a.first_try is not None and a.first_try >= 1]
    if lagged and kernel_ok:
        out.append(f"What only a kernel series gives: a file that exists when mkdir returns. The user-space mirror's "
                   f"first read succeeded {_pct(mk['first_try'])} of the time right after mkdir (p50 lag "
                   f"{_u(_p(mk))}); Approach {' and '.join(kernel_ok)}: every first read succeeded. Shell tools and "
                   "uid 65534 read these files; a BPF_PROG_RUN pin serves neither.")
    elif not kernel_ok:
        out.append("Whether the kernel series remove the mkdir -> readable lag was not measured in this run "
                   "(no patched-kernel boot), so the one benefit a user-space mirror cannot give is unproven here.")
    wins = compare(a1, a2)
    if a1.read is not None and a2.read is not None:
        lost = [f"{w} ({d})" for w, who, d in wins if who == "a2"]
        won = [f"{w} ({d})" for w, who, d in wins if who == "a1"]
        ties = [w for w, who, _ in wins if who == "tie"]
        pick = "Approach 2" if len(lost) > len(won) else "Approach 1" if len(won) > len(lost) else "neither clearly"
        out.append(f"Approach 1 against Approach 2 (same boot): Approach 1 loses on {'; '.join(lost) or 'nothing'}; "
                   f"wins on {'; '.join(won) or 'nothing'}"
                   + (f"; ties on {', '.join(ties)}" if ties else "") + f". If a file interface is merged, the "
                   f"numbers favour {pick}.")
    else:
        loc = [w for w in wins if w[0] == "kernel lines"]
        out.append("Approach 1 against Approach 2: not measured in this run (needs the boot of the image carrying "
                   "both series), so this report cannot say which one to merge"
                   + (f"; only their size is known: {loc[0][2]} kernel lines." if loc else "."))
    return out


def _tree_cost(a1: Approach, a2: Approach) -> str:
    out = []
    for k, a in (("1", a1), ("2", a2)):
        parts = []
        if a.mkdir_x is not None and a.mkdir_x > 1 + TIE:
            parts.append(f"every covered mkdir costs {a.mkdir_x:.1f}x")
        if a.stall_x is not None and a.stall_x > 1 + TIE:
            parts.append(f"link create stalls concurrent mkdir ({a.stall_x:.1f}x its idle worst)")
        out.append(f"Approach {k}: " + (", ".join(parts) if parts else "no cost above 10% measured"))
    return "; ".join(out) + ". The user-space mirror pays none of these inside mkdir, but lags (row above)."


def verdict(doc: dict[str, Any]) -> Section:
    a1, a2 = approach(doc, "a1"), approach(doc, "a2")
    mirror, prog, cpu = _c(doc, "mirror_iter"), _c(doc, "prog_run"), _c(doc, "cpu_stat")
    file_x_prog, file_x_cpu = stats.ratio(mirror, prog), stats.ratio(mirror, cpu)
    kernel_x = ", ".join(f"Approach {k[1]} {_x(a.read_x_cpu)}" for k, a in (("a1", a1), ("a2", a2)))
    if file_x_prog is None:
        eff = "Cannot tell: a read row is missing."
    else:
        kx = [f"Approach {k[1]} {a.read_x_cpu:.1f}x" for k, a in (("a1", a1), ("a2", a2)) if a.read_x_cpu is not None]
        eff = (f"{'True' if file_x_prog > 2 else 'Not borne out'} against BPF_PROG_RUN ({file_x_prog:.0f}x in C). "
               + (f"Against the cgroupfs file readers already poll (cpu.stat), the kernel-kept files cost "
                  f"{', '.join(kx)} (same boot) and the user-space mirror's {_x(file_x_cpu)} (host)." if kx else
                  "The kernel-kept files' cost against cpu.stat was not measured in this run."))
    prog_cells = [_cell(doc, "prog_run", c) for c in ("cat / grep", "unprivileged (uid 65534)", "after rmdir")]
    mk = doc["mkdir_readable"].get("mirror_iter", {})
    kernel_mk = "; ".join(f"Approach {k}: " + (f"{_pct(a.first_try, a.mkdirs)} of first reads succeeded"
                                                  if a.first_try is not None else "not measured")
                          for k, a in (("1", a1), ("2", a2)))
    mk_txt = (f"user-space mirror: first read after mkdir succeeded {_pct(mk.get('first_try'))}, lag p50 "
              f"{_u(_p(mk))} / p99 {_u(_p(mk, 'p99_us'))} (host); {kernel_mk} (guest)")
    kernel_first = [a.first_try for a in (a1, a2) if a.first_try is not None]
    only = ("No: the files also exist the moment mkdir returns, which no user-space mirror can give"
            if kernel_first and min(kernel_first) >= 1 and mk.get("first_try", 1) < 1 else
            "Not shown by this run: the kernel series' mkdir -> readable was not measured" if not kernel_first else
            "Not borne out: a kernel-kept file was not always readable right after mkdir")
    xs, xg, mu = (_c(doc, k, table="knobs") for k in ("xattr_set", "xattr_get", "map_update"))
    churn = {k: _churn_x(doc["churn"].get(k), doc["read"].get(k, {}).get("c")) for k in
             ("mirror_iter", "iter_per_read", "prog_run", "cpu_stat")}
    g = _gbase(doc)
    g_churn = _churn_x(g.get("churn"), g.get("c")) if stats.is_measured(g) else None
    names = {"mirror_iter": "the mirror's file", "iter_per_read": "a per-read iterator", "cpu_stat": "cpu.stat"}
    rose = [f"{names[k]} {churn[k]:.1f}x" for k in names if (churn[k] or 0) > 1.5]
    flat = [f"{n} {_x(v)}" for n, v in (("BPF_PROG_RUN", churn["prog_run"]),) if v is not None and v <= 1.5]
    hf = ((f"Partly: under churn the p99 of {', '.join(rose)} rose more than 1.5x (host)" if rose else
           "Not borne out on this host: no file read's p99 rose 1.5x under churn")
          + (f", while {', '.join(flat)} did not" if flat else "")
          + ("; a plain cgroupfs file (cpu.stat) rose too, so on this host it is the cost of any file read on a "
             "busy tree, not of the series" if churn["cpu_stat"] is not None and churn["cpu_stat"] > 1.5 else "")
          + ".")
    mirror_pop = doc["populate"][-1]
    m_stall = stats.ratio(_p(mirror_pop["probe_during_pass"], "max_us"), _p(mirror_pop["probe_idle"], "max_us"))
    holds = [a.hold_s for a in (a1, a2) if a.hold_s is not None]
    lc = _bench_part(doc, "link_create")
    n_big = max((int(n) for n in lc), default=0) if stats.is_measured(lc) else 0
    rows = [
        ["\"a different and not-particularly-efficient way to communicate with BPF progs\" (Tejun)",
         f"C p50: stat file {_u(mirror)} vs BPF_PROG_RUN {_u(prog)} ({_x(file_x_prog)}) vs cgroupfs cpu.stat "
         f"{_u(cpu)} ({_x(file_x_cpu)}); Python {_u(_py(doc, 'mirror_iter'))} vs {_u(_py(doc, 'prog_run'))} "
         f"(host). Kernel-kept files vs cpu.stat in the same guest boot: {kernel_x}.", eff],
        ["\"Wouldn't pinned BPF_PROG_RUN program fit the bill?\" (Tejun)",
         f"BPF_PROG_RUN {_u(prog)} C p50; cat: {prog_cells[0]}; uid 65534: {prog_cells[1]}; after rmdir: "
         f"{prog_cells[2]}.",
         "For programs, yes: it is the cheapest read and answers at mkdir. It does not fit shells or unprivileged "
         "readers" + (" (both checks failed above)." if not any(_yes(c) for c in prog_cells[:2]) else ".")],
        ["\"AFAICS, this is the only actual benefit, right? Having text files as interface.\" (Tejun), "
         "\"there will always be a latency between cgroups getting created and userspace going to pin\" (Josh)",
         mk_txt + ".", only + "."],
        ["\"for cgroup level low-freq hinting, being able to read xattrs on cgroupfs should be enough\" (Tejun)",
         f"xattr set {_u(xs)} / get {_u(xg)} vs pinned map update {_u(mu)} (C p50, host); uid 65534 get: "
         f"{_cell(doc, 'xattr', 'unprivileged (uid 65534)')}; v1: {_cell(doc, 'xattr', 'cgroup v1')}. Neither "
         "series has a write mode.",
         "Agreed: for knobs xattrs are enough today; both series lose here (no write path, more kernel code)."],
        ["\"Anything high-volume/freq ... cgroupfs file interface is far from ideal\" (Tejun)",
         f"read p99 under mkdir/rmdir churn vs idle: mirror file {_x(churn['mirror_iter'])}, per-read iterator "
         f"{_x(churn['iter_per_read'])}, BPF_PROG_RUN {_x(churn['prog_run'])}, cpu.stat {_x(churn['cpu_stat'])} "
         f"(host); Approach 1 {_x(a1.churn_x)}, Approach 2 {_x(a2.churn_x)}, cpu.stat {_x(g_churn)} (guest).", hf],
        ["what the file costs the cgroup tree (the RFC walks it \"with cgroup_mutex in hand\")",
         f"link create over {n_big + 1 if n_big else 'N'} cgroups: Approach 1 "
         f"{f'{a1.hold_s * 1e3:.0f} ms' if a1.hold_s is not None else 'not measured'} "
         f"({_x(a1.hold_x_mkdir)} a mkdir per cgroup) with no cgroup_mutex hold (it walks under RCU and a "
         f"mutex of its own), Approach 2 "
         f"{f'{a2.hold_s * 1e3:.0f} ms' if a2.hold_s is not None else 'not measured'} ({_x(a2.hold_x_mkdir)}), "
         f"all of it under cgroup_mutex; "
         f"a concurrent mkdir's worst {_x(a1.stall_x)} / {_x(a2.stall_x)} idle (guest). mkdir under one link "
         f"{_x(a1.mkdir_x)} / {_x(a2.mkdir_x)} no link. User-space mirror: no cgroup_mutex across its pass, "
         f"concurrent mkdir worst {_x(m_stall)} idle at {mirror_pop['cgroups']} cgroups (host).",
         _tree_cost(a1, a2) if holds else _nm(lc) + "."],
    ]
    return Section("Verdict: the maintainer's points", text=recommendation(doc, a1, a2),
                   tables=[(["point (RFC thread)", "number from this run", "reading"], rows)])
