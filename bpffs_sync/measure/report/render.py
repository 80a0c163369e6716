"""results.json -> sections of tables -> report.md and report.html (the same model for both).

Every cell is text made from a measured number of this run, a check's outcome, or
"not measured: <reason>". check_cells() finds empty cells and NaN/inf (the tests use it).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.stats import fmt_bytes, fmt_ratio, fmt_us

Table = tuple[list[str], list[list[str]]]
BASELINE = "cpu_stat"  # the named baseline of read ratios: cgroupfs v2 cpu.stat, same run


@dataclass(slots=True)
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _nm(entry: Any) -> str:
    return f"not measured: {entry['not_measured']}" if isinstance(entry, dict) and "not_measured" in entry \
        else "not measured: no result"


def _p(entry: Any, q: str = "p50_us") -> float | None:
    return entry["summary"][q] if stats.is_measured(entry) and "summary" in entry else None


def _lat(entry: Any, q: str) -> str:
    v = _p(entry, q)
    return fmt_us(v) if v is not None else _nm(entry)


def _patched(doc: dict[str, Any]) -> dict[str, Any]:
    p = doc.get("patched", {})
    return p if isinstance(p, dict) else {}


def _a1(doc: dict[str, Any]) -> dict[str, Any]:
    """The Approach 1 guest results, or a not_measured entry saying why."""
    p = _patched(doc)
    if "not_measured" in p:
        return p
    a1: dict[str, Any] = p.get("a1_file", stats.not_measured("the guest gave no a1_file result"))
    return a1


def _a2(doc: dict[str, Any]) -> dict[str, Any]:
    """Approach 2's rows: its series' absence is the reason that matters while it has not landed."""
    loc = doc.get("loc", {}).get("a2_file")
    if not stats.is_measured(loc):
        return stats.not_measured("Approach 2 has not landed (no kernel-approach2/ series; issue 10)")
    p = _patched(doc)
    if "not_measured" in p:
        return p
    a2: dict[str, Any] = p.get("a2_file", stats.not_measured("the guest gave no a2_file result"))
    return a2


def label(doc: dict[str, Any], key: str) -> str:
    for m in doc.get("mechanisms", []):
        if m["key"] == key:
            return f"{m['label']} ({m['what']})"
    return key


# --- sections --------------------------------------------------------------------------------------


def environment(doc: dict[str, Any]) -> Section:
    m = doc["meta"]
    cpu = m["cpu"]
    emul = "yes (TCG): read ratios, not absolute times" if cpu["emulated"] else \
        f"no (host CPU{', under a hypervisor' if cpu['hypervisor'] else ''})"
    p = _patched(doc)
    guest = _nm(p) if "not_measured" in p else \
        f"kernel {p.get('kernel', '?')} on {p.get('cpu', '?')}, emulated (TCG): ratios only, {p.get('date', '?')}"
    rows = [["kernel", m["kernel"]], ["CPU", f"{cpu['model']} x {cpu['count']}"], ["date", m["date"]],
            ["git commit", m["commit"] + (" (work tree has uncommitted changes)" if m["dirty"] else "")],
            ["stock rows emulated", emul], ["patched-kernel rows", guest],
            ["mode", "--quick" if m["plan"]["quick"] else "full"], ["run time", f"{m['duration_s']:.0f} s"]]
    return Section("Where and when", tables=[(["", "value"], rows)])


def _read_row(doc: dict[str, Any], key: str, entry: Any, churn: Any, *, base_c: float | None,
              base_name: str) -> list[str]:
    if not stats.is_measured(entry):
        return [label(doc, key), *[_nm(entry)] * 7]
    c, py = entry["c"], entry.get("py", stats.not_measured("no Python loop in this run"))
    ratio = stats.ratio(_p(c), base_c)
    churn_ratio = stats.ratio(_p(churn, "p99_us"), _p(c, "p99_us"))
    value = str(c.get("value", py.get("value") if isinstance(py, dict) else "")) if stats.is_measured(c) else _nm(c)
    return [label(doc, key), _lat(c, "p50_us"), _lat(c, "p99_us"), _lat(py, "p50_us"), _lat(py, "p99_us"),
            fmt_ratio(ratio, base_name), _lat(churn, "p99_us") + (f" ({churn_ratio:.1f}x idle p99)"
                                                                 if churn_ratio is not None else ""), value or "0"]


def reads(doc: dict[str, Any]) -> Section:
    heads = ["mechanism (figure read)", "C p50", "C p99", "Python p50", "Python p99", "C p50 vs baseline",
             "C p99 under churn", "value read"]
    base = _p(doc["read"].get(BASELINE, {}).get("c"))
    rows = []
    a1 = _a1(doc)
    if stats.is_measured(a1):
        gbase = _p(a1["baseline_cpu_stat"]["c"])
        rows.append(_read_row(doc, "a1_file", a1["read"], a1.get("churn"), base_c=gbase,
                              base_name="cpu.stat in the same guest boot"))
        rows[-1][0] = "Approach 1 file, patched kernel (hist_oncpu; guest, TCG)"
    else:
        rows.append(["Approach 1 file, patched kernel", *[_nm(a1)] * 7])
    rows.append(["Approach 2 file, patched kernel", *[_nm(_a2(doc))] * 7])
    for key, entry in doc["read"].items():
        rows.append(_read_row(doc, key, entry, doc["churn"].get(key), base_c=base, base_name="cpu.stat"))
    return Section(
        "Read cost per mechanism",
        text=["Each mechanism reads the same cgroup (`busy`, with a sleeping task and a short CPU burn). C: "
              "bench/report/readloop.c, one timed operation each (open+read+close+parse for files, one bpf(2) "
              "call for maps and BPF_PROG_RUN, link+iterator+read+close for the per-read iterator). Python: the "
              "same through the project's libbpf binding or pyroute2, parsing or formatting to the same numbers. "
              "Churn: another process mkdirs/rmdirs cgroups nonstop beside the target (each takes cgroup_mutex). "
              "Baseline: cgroupfs v2 `cpu.stat`, same run (for Approach 1: `cpu.stat` in the same guest boot)."],
        tables=[(heads, rows)], images=["read_cdf_c.png", "read_cdf_python.png", "churn_p99.png"])


def knobs(doc: dict[str, Any]) -> Section:
    rows = []
    base = _p(doc["knobs"].get("map_update", {}).get("c"))
    for key, entry in doc["knobs"].items():
        if not stats.is_measured(entry):
            rows.append([label(doc, key), *[_nm(entry)] * 5])
            continue
        c, py = entry["c"], entry["py"]
        rows.append([label(doc, key), _lat(c, "p50_us"), _lat(c, "p99_us"), _lat(py, "p50_us"),
                     _lat(py, "p99_us"), fmt_ratio(stats.ratio(_p(c), base), "map update")])
    reason = "the kernel series has no write mode yet (RFC: 'Potential Feature: File Writes')"
    rows.append(["Approach 1 file write", *[f"not measured: {reason}"] * 5])
    rows.append(["Approach 2 file write", *[_nm(_a2(doc))] * 5])
    return Section("Per-cgroup knobs (writes, the sched_ext case)",
                   text=["A u64 knob per cgroup: a cgroupfs `user.*` xattr on the cgroup directory (the maintainer's "
                         "suggestion) against a pinned BPF map keyed by cgroup id. Baseline: the map update."],
                   tables=[(["mechanism", "C p50", "C p99", "Python p50", "Python p99", "C p50 vs baseline"], rows)])


def mkdir_readable(doc: dict[str, Any]) -> Section:
    rows = []
    a1 = _a1(doc)
    entries: list[tuple[str, Any]] = [("Approach 1 file (guest, TCG)", a1.get("mkdir_readable", a1)
                                       if stats.is_measured(a1) else a1),
                                      ("Approach 2 file", _a2(doc))]
    entries += [(label(doc, k), v) for k, v in doc["mkdir_readable"].items()]
    for name, e in entries:
        if not stats.is_measured(e):
            rows.append([name, _nm(e), _nm(e), _nm(e)])
            continue
        rows.append([name, _lat(e, "p50_us"), _lat(e, "p99_us"),
                     f"{e['first_try'] * 100:.0f}% of {int(e['summary']['n'])} (worst: {e['attempts_max']} tries)"])
    return Section("mkdir -> readable",
                   text=["Time from mkdir(2) returning to the first successful read of the new cgroup, polling every "
                         "50 us. The user-space mirror runs as a daemon process, as deployed. A mechanism that is "
                         "readable by construction shows it here as a first read that succeeds."],
                   tables=[(["mechanism", "p50", "p99", "first read after mkdir succeeded"], rows)])


def populate(doc: dict[str, Any]) -> Section:
    bench = _patched(doc).get("a1_bench")
    by_n = {b["cgroups"]: b for b in bench} if isinstance(bench, list) else {}
    why = _nm(bench if bench is not None else _patched(doc))
    rows = []
    for p in doc["populate"]:
        b = by_n.get(p["cgroups"])
        rows.append([
            str(p["cgroups"]), f"{p['first_pass_ns'] / 1e6:.1f} ms ({p['per_cgroup_us']:.0f} us/cgroup)",
            f"{p['mkdir_ns'] / 1e6:.1f} ms", fmt_ratio(p["ratio_vs_mkdir"], "mkdir"),
            f"{_lat(p['probe_idle'], 'max_us')} -> {_lat(p['probe_during_pass'], 'max_us')}",
            f"{b['link_create_s'] * 1e3:.1f} ms (TCG)" if b else why,
            f"{b['mkdir_worst_idle_ms']:.1f} -> {b['mkdir_worst_during_attach_ms']:.1f} ms (TCG)" if b else why])
    return Section("Populate vs number of cgroups",
                   text=["User-space mirror: its first full pass over N existing cgroups (programs already loaded; "
                         "it holds no cgroup_mutex across the pass, each pin is its own syscall); baseline: the mkdir "
                         "of those N cgroups, same run. Worst mkdir: a concurrent mkdir loop's worst latency, idle -> "
                         "during the pass. Approach 1: link create walks the tree under cgroup_mutex, so its duration "
                         "is the hold time."],
                   tables=[(["cgroups", "mirror first pass", "mkdir of them", "ratio", "worst concurrent mkdir",
                             "A1 link create (cgroup_mutex hold)", "A1 worst concurrent mkdir"], rows)],
                   images=["scaling.png"])


def mkdir_cost(doc: dict[str, Any]) -> Section:
    c = doc["mkdir_cost"]
    n = c["cgroups"]
    rows = [["user-space mirror daemon running", f"{c['mkdir_plain_ns'] / n / 1e3:.1f} -> "
             f"{c['mkdir_mirrored_ns'] / n / 1e3:.1f} us ({fmt_ratio(c['mkdir_ratio'], 'no daemon')})",
             f"{c['rmdir_plain_ns'] / n / 1e3:.1f} -> {c['rmdir_mirrored_ns'] / n / 1e3:.1f} us "
             f"({fmt_ratio(c['rmdir_ratio'], 'no daemon')})", str(n)]]
    bench = _patched(doc).get("a1_bench")
    if isinstance(bench, list) and bench:
        for b in bench:
            k = b["cgroups"]
            rows.append(["Approach 1 link on the root (guest, TCG)",
                         f"{b['mkdir_plain_s'] / k * 1e6:.1f} -> {b['mkdir_mirrored_s'] / k * 1e6:.1f} us "
                         f"({b['mkdir_mirrored_s'] / b['mkdir_plain_s']:.2f}x no link)",
                         f"{b['rmdir_plain_s'] / k * 1e6:.1f} -> {b['rmdir_mirrored_s'] / k * 1e6:.1f} us "
                         f"({b['rmdir_mirrored_s'] / b['rmdir_plain_s']:.2f}x no link)", str(k)])
    else:
        why = _nm(bench if bench is not None else _patched(doc))
        rows.append(["Approach 1 link on the root", why, why, why])
    rows.append(["Approach 2", *[_nm(_a2(doc))] * 3])
    return Section("Cost added to mkdir and rmdir",
                   text=["Per cgroup, without -> with the mechanism, same tree, same run. The user-space mirror adds "
                         "nothing inside mkdir(2); what shows is its daemon competing for the CPUs."],
                   tables=[(["with", "mkdir", "rmdir", "cgroups"], rows)])


def memory(doc: dict[str, Any]) -> Section:
    m = doc["memory"]
    pop = doc["populate"][-1]
    slab = pop["slab_per_file_bytes"]
    a1 = _a1(doc)
    rows = [
        ["user-space mirror: one pinned iterator + bpffs dir per cgroup",
         (f"{fmt_bytes(slab)} per file (slab delta over {pop['pins']} files)" if slab > 0 else
          f"no slab growth seen over {pop['pins']} files (delta {fmt_bytes(slab * pop['pins'])}: other activity)")],
        ["pinned stats map (BPF_PROG_RUN, map lookup share it)",
         f"{fmt_bytes(m['map_per_entry_bytes'])} per entry, preallocated: {fmt_bytes(m['map_memlock_bytes'])} "
         f"for {m['map_max_entries']} entries"],
        ["cgroupfs user.* xattr (8-byte value)",
         f"{fmt_bytes(m['xattr_per_cgroup_bytes'])} per cgroup (slab delta over {m['xattr_cgroups']})"],
        ["Approach 1 file (guest)", f"{fmt_bytes(a1['slab_per_file_bytes'])} per file (slab delta over "
         f"{a1['slab_files']} cgroups)" if stats.is_measured(a1) else _nm(a1)],
        ["Approach 2 file", _nm(_a2(doc))],
    ]
    return Section("Memory per mirrored cgroup", tables=[(["state", "bytes"], rows)])


def loc(doc: dict[str, Any]) -> Section:
    rows = []
    for key, name in (("a1_file", "Approach 1 (kernel-approach1/patches)"),
                      ("a2_file", "Approach 2 (kernel-approach2/patches)")):
        e = doc["loc"][key]
        rows.append([name, str(e["kernel"]), str(e["tools"]), str(e["selftests"])] if stats.is_measured(e)
                    else [name, _nm(e), _nm(e), _nm(e)])
    rows.append(["stock-kernel mechanisms (mirror, BPF_PROG_RUN, map, xattr)", "0", "0", "0"])
    return Section("Kernel code per approach",
                   text=["Lines added by each series' patches (cover letter excluded), counted in this run."],
                   tables=[(["approach", "kernel lines", "tools lines (uapi copy, libbpf)", "selftest lines"], rows)])


def usability(doc: dict[str, Any]) -> Section:
    u = doc["usability"]
    cols = u["columns"]
    rows = [[label(doc, k) if k != "xattr" else "cgroupfs user.* xattr", *[r[c] for c in cols]]
            for k, r in u["rows"].items()]
    a1 = _a1(doc)
    a1_cells = a1.get("usability") if stats.is_measured(a1) else None
    rows.insert(0, ["Approach 1 file, patched kernel",
                    *([a1_cells.get(c, "not measured: no guest check") for c in cols] if isinstance(a1_cells, dict)
                      else [_nm(a1) if not stats.is_measured(a1) else "not measured: no guest usability check yet"]
                      * len(cols))])
    rows.insert(1, ["Approach 2 file, patched kernel", *[_nm(_a2(doc))] * len(cols)])
    return Section("Usability",
                   text=["Every cell is a check run in this report: `cat | grep` in a shell, the C loop run as uid "
                         "65534, the mechanism pointed at the cgroup-v1 cpu hierarchy, a read after rmdir, and "
                         "the mirror daemon killed with SIGKILL."],
                   tables=[(["mechanism", *cols], rows)])


def sections(doc: dict[str, Any]) -> list[Section]:
    from bpffs_sync.measure.report.verdict import verdict

    return [environment(doc), verdict(doc), reads(doc), knobs(doc), mkdir_readable(doc), populate(doc),
            mkdir_cost(doc), memory(doc), loc(doc), usability(doc)]


# --- output ----------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(secs: list[Section]) -> str:
    out = ["# bpffs-sync report: Approach 1 against the alternatives", ""]
    for s in secs:
        out += [f"## {s.title}", ""]
        for t in s.text:
            out += [t, ""]
        for heads, rows in s.tables:
            out.append("| " + " | ".join(_md_cell(h) or " " for h in heads) + " |")
            out.append("|" + "---|" * len(heads))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        out += [f"![{img}]({img})" for img in s.images]
        if s.images:
            out.append("")
    return "\n".join(out)


def to_html(secs: list[Section]) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>bpffs-sync report</title><style>"
           "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px;vertical-align:top}th{background:#eee}"
           "</style></head><body><h1>bpffs-sync report: Approach 1 against the alternatives</h1>"]
    for s in secs:
        out.append(f"<h2>{e(s.title)}</h2>")
        out += [f"<p>{e(t)}</p>" for t in s.text]
        for heads, rows in s.tables:
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</table>")
        out += [f"<p><img src='{e(img)}' alt='{e(img)}'></p>" for img in s.images]
    out.append("</body></html>")
    return "\n".join(out)


def check_cells(secs: list[Section]) -> list[str]:
    """Every empty cell, and every cell showing nan/inf, as 'section: row: column'."""
    bad = []
    for s in secs:
        for heads, rows in s.tables:
            for row in rows:
                if len(row) != len(heads):
                    bad.append(f"{s.title}: {row[:1]}: {len(row)} cells for {len(heads)} columns")
                for head, cell in zip(heads, row, strict=False):
                    words = cell.lower().replace("(", " ").replace(")", " ").split()
                    if not cell.strip() or cell.strip() == "None" or "nan" in words or "inf" in words:
                        bad.append(f"{s.title}: {row[0]}: {head or 'label'} = {cell!r}")
    return bad


def headline(doc: dict[str, Any]) -> list[str]:
    """The closing note's ratios, all from this run."""
    r, base = doc["read"], _p(doc["read"].get(BASELINE, {}).get("c"))
    lines = []
    for key in ("mirror_iter", "prog_run", "map_lookup", "iter_per_read"):
        e = r.get(key)
        if stats.is_measured(e) and stats.is_measured(e["c"]):
            rr = stats.ratio(_p(e["c"]), base)
            lines.append(f"{key}: C p50 {fmt_us(_p(e['c']) or math.nan)}, {fmt_ratio(rr, 'cpu.stat')}")
    return lines
