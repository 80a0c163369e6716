"""results.json -> sections of tables -> report.md and report.html (the same model for both).

Every cell is text made from a measured number of this run, a check's outcome, or
"not measured: <reason>". check_cells() finds empty cells and NaN/inf (the tests use it).
"""

from __future__ import annotations

import html
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


def _samples(entry: Any) -> list[int] | None:
    s = entry.get("samples_ns") if stats.is_measured(entry) else None
    return s if isinstance(s, list) and s else None


# Bootstrap results by the identity of their sample lists; each entry keeps its lists alive, so an
# id cannot be reused while it is cached. The tables, verdict and closing note ask for the same ones.
_MEMO: dict[tuple[int, int, float], tuple[list[int], list[int] | None, Any]] = {}


def est(entry: Any, q: float = 0.5) -> stats.Est | None:
    """The q-quantile of a measured series in us with its bootstrap interval (None: no samples)."""
    s = _samples(entry)
    if not s:
        return None
    key = (id(s), 0, q)
    if key not in _MEMO:
        _MEMO[key] = (s, None, stats.estimate(s, q, scale=1e-3))
    got: stats.Est | None = _MEMO[key][2]
    return got


def ratio_est(entry: Any, base: Any, q: float = 0.5) -> stats.RatioEst | None:
    """entry / base of their q-quantiles, both resampled (None: either has no samples)."""
    a, b = _samples(entry), _samples(base)
    if not a or not b:
        return None
    key = (id(a), id(b), q)
    if key not in _MEMO:
        _MEMO[key] = (a, b, stats.ratio_est(a, b, q))
    got: stats.RatioEst | None = _MEMO[key][2]
    return got


def _cell(entry: Any, q: float = 0.5) -> str:
    """'median [lo, hi] n=N' of a series, or why it has none."""
    if not stats.is_measured(entry):
        return _nm(entry)
    return stats.fmt_est(est(entry, q), "not measured: no raw samples in this result")


def _patched(doc: dict[str, Any]) -> dict[str, Any]:
    p = doc.get("patched", {})
    return p if isinstance(p, dict) else {}


def _a2_absent(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Approach 2's rows when its series is not in this checkout: that is the reason that matters."""
    if stats.is_measured(doc.get("loc", {}).get("a2_file")):
        return None
    return stats.not_measured("Approach 2 has not landed (no kernel-approach2/ series in this checkout)")


def _file(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """One approach's file rows from the guest ("a1" or "a2"), or a not_measured entry saying why."""
    absent = _a2_absent(doc) if key == "a2" else None
    if absent is not None:
        return absent
    p = _patched(doc)
    if "not_measured" in p:
        return p
    if key not in p.get("carries", []):
        im = p.get("image", {})
        return stats.not_measured(f"the booted kernel does not carry Approach {key[1]} (BTF probe in the guest; "
                                  f"image {im.get('path', '?')}, meant for {im.get('series', '?')})")
    entry: dict[str, Any] = p.get(f"{key}_file", stats.not_measured(f"the guest gave no {key}_file result"))
    return entry


def _a1(doc: dict[str, Any]) -> dict[str, Any]:
    return _file(doc, "a1")


def _a2(doc: dict[str, Any]) -> dict[str, Any]:
    return _file(doc, "a2")


def _bench(doc: dict[str, Any]) -> dict[str, Any]:
    """kernel-approach2's bench JSON from the same boot, or why there is none."""
    absent = _a2_absent(doc)
    if absent is not None:
        return absent
    p = _patched(doc)
    if "not_measured" in p:
        return p
    b: dict[str, Any] = p.get("bench_a2", stats.not_measured("the guest gave no bench_a2 result"))
    return b


def _bench_part(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """One part of bench_a2's JSON (link_create, mkdir, stall, read, slab_per_file), or why not."""
    b = _bench(doc)
    if not stats.is_measured(b):
        return b
    part = b.get(name, stats.not_measured(f"bench_a2 gave no {name} result"))
    return part if isinstance(part, dict) else stats.not_measured(f"bench_a2's {name} is not an object")


def _gbase(doc: dict[str, Any]) -> dict[str, Any]:
    """cgroupfs cpu.stat read in the same guest boot: the baseline of the patched rows."""
    p = _patched(doc)
    if "not_measured" in p:
        return p
    b: dict[str, Any] = p.get("baseline_cpu_stat", stats.not_measured("the guest gave no cpu.stat baseline"))
    return b


NAMES = {"a1": "Approach 1 file, patched kernel", "a2": "Approach 2 file, patched kernel"}
FIGURE = {"a1": "<bpffs>/cgroup/<path>/hist_oncpu", "a2": "<cgroup>/bpf.stat.hist_oncpu"}


def label(doc: dict[str, Any], key: str) -> str:
    for m in doc.get("mechanisms", []):
        if m["key"] == key:
            return f"{m['label']} ({m['what']})"
    return key


# --- sections --------------------------------------------------------------------------------------


def _guest_rows(doc: dict[str, Any]) -> list[list[str]]:
    p = _patched(doc)
    if "not_measured" in p:
        return [["patched-kernel rows", _nm(p)]]
    im = p.get("image", {})
    booted = "yes (its `uname -r -v` is the image's version string)" if p.get("booted_matches_image") else \
        f"NO: the guest ran {p.get('kernel')} {p.get('version')}, not the image recorded before the boot"
    exit_note = "" if p.get("guest_exit") == 0 else \
        f"; run-guest.sh exited {p.get('guest_exit')} (3: the guest's dmesg has a WARNING/BUG; see guest/)"
    return [
        ["patched image", f"{im.get('path', '?')} ({im.get('series', '?')}), built {im.get('built', '?')}, "
                          f"sha256 {str(im.get('sha256', '?'))[:16]}"],
        ["patched image version", str(im.get("version", "?"))],
        ["patched image tree (at boot time; the image may come from another commit of it)",
         f"{im.get('tree_commit', '?')}{' with uncommitted changes' if im.get('tree_dirty') else ''}"
         f"{', a build of it under way' if im.get('build_running') else ''}: "
         + ("; ".join(im.get("tree_patches", [])) or "no patches")],
        ["booted that image", booted],
        ["series the booted kernel carries (BTF probe in the guest)",
         " + ".join(f"Approach {k[1]}" for k in p.get("carries", [])) or "neither"],
        ["guest", f"kernel {p.get('kernel', '?')}, {p.get('cpu', '?')} x {p.get('cpus', '?')}, {p.get('date', '?')}, "
                  f"emulated (QEMU TCG, no KVM): read the ratios, not the absolute times"],
        ["guest run time", f"{p.get('wall_s', 0):.0f} s boot + run (measures {p.get('guest_run_s', 0):.0f} s)"
                           + exit_note],
    ]


def environment(doc: dict[str, Any]) -> Section:
    m = doc["meta"]
    cpu = m["cpu"]
    emul = "yes (TCG): read ratios, not absolute times" if cpu["emulated"] else \
        f"no (host CPU{', under a hypervisor' if cpu['hypervisor'] else ''})"
    rows = [["kernel", m["kernel"]], ["CPU", f"{cpu['model']} x {cpu['count']}"], ["date", m["date"]],
            ["git commit", m["commit"] + (" (work tree has uncommitted changes)" if m["dirty"] else "")],
            ["stock rows emulated", emul], *_guest_rows(doc),
            ["mode", "--quick" if m["plan"]["quick"] else "full"], ["run time", f"{m['duration_s']:.0f} s"]]
    return Section("Where and when",
                   text=["Stock-kernel rows ran on this host. Patched-kernel rows (Approach 1 and 2) ran in one "
                         "boot of one image carrying both series, under emulation: compare them with each other "
                         "and with the cgroupfs cpu.stat read of the same boot, not with the host's rows."],
                   tables=[(["", "value"], rows)])


def _short(cell: str) -> str:
    """A usability cell's verdict word(s): 'yes', 'no', 'partly', 'n/a: no daemon' ..."""
    head = cell.split(":", 1)[0]
    return "n/a: no daemon" if cell.startswith("n/a: no daemon") else head if len(head) <= 14 else cell[:40]


# The headline's host rows: an interface, and its routes in each variant (full text, raw value).
HEADLINE_HOST = {
    "mirror_iter": ("user-space mirror: pinned iterator files (full text: the stat's file; raw value: a file "
                    "printing total_ns alone)", ("mirror_iter", "total_file")),
    "prog_run": ("pinned BPF_PROG_RUN programs, cgroup id in (full text: stat_text; raw value: stat_by_id)",
                 ("prog_run_text", "prog_run")),
}


def _variants_cell(doc: dict[str, Any], keys: tuple[str, ...], base: Any, read: dict[str, Any] | None = None) -> str:
    """'full text: 1.88x cpu.stat [..]; raw value: 0.71x cpu.stat [..]': each route's C p50 against
    the baseline (of the same machine: read is the guest's reads or, by default, the host's), named by
    its declared variant."""
    variant = {m["key"]: m.get("variant") or m["key"] for m in doc.get("mechanisms", [])}
    cells = []
    for key in keys:
        r = (doc["read"] if read is None else read).get(key)
        ratio = stats.fmt_ratio_est(ratio_est(r["c"], base), "cpu.stat") if stats.is_measured(r) and \
            stats.is_measured(r["c"]) else _nm(r)
        cells.append(f"{variant.get(key, key)}: {ratio}")
    return "; ".join(cells)


def headline_source(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The guest's stock part when its reads, mkdir -> readable and mkdir cost were all measured, else None."""
    from bpffs_sync.measure.report.render_guest import stock

    g = stock(doc)
    ok = stats.is_measured(g) and all(stats.is_measured(g.get(k)) for k in ("read", "mkdir_readable", "mkdir_cost"))
    return g if ok else None


def headline_section(doc: dict[str, Any]) -> Section:
    """One row per main mechanism: the figures a reader compares first, each from this run."""
    from bpffs_sync.measure.report.verdict import approach

    u = doc["usability"]["rows"]
    cols = ("cat / grep", "unprivileged (uid 65534)")
    rows = []
    slab = _bench_part(doc, "slab_per_file")
    mkdir_part = _bench_part(doc, "mkdir")
    for key in ("a1", "a2"):
        a, e = approach(doc, key), _file(doc, key)
        if not stats.is_measured(e):
            rows.append([f"{NAMES[key]} (guest)", *[_nm(e)] * 6])
            continue
        cells = e.get("usability", {})
        mem = slab.get(f"{key}_bytes_per_file") if stats.is_measured(slab) else None
        rows.append([f"{NAMES[key]} (guest, TCG)",
                     "full text, parsed: " + stats.fmt_ratio_est(a.read_x_cpu, "cpu.stat, same boot"),
                     f"{a.mk.first} of {a.mk.tries} first reads" if a.mk is not None else "not measured",
                     *[_short(str(cells.get(c, "not measured"))) for c in cols],
                     f"{a.mkdir_x:.2f}x (1 link)" if a.mkdir_x is not None else _nm(mkdir_part),
                     fmt_bytes(mem) if mem is not None else _nm(slab)])
    # The user-space rows from the guest boots when they ran there (the same boots as Approach 1 and 2's
    # rows: one machine in the read and mkdir columns), else the host's; memory and usability are the host's.
    g = headline_source(doc)
    where = "guest, the same boots, TCG" if g else "host"
    read = g["read"] if g else doc["read"]
    base = read.get(BASELINE, {}).get("c")
    mk = g["mkdir_readable"] if g else doc["mkdir_readable"]
    cost = g["mkdir_cost"] if g else doc["mkdir_cost"]
    pop, m = doc["populate"][-1], doc["memory"]
    mk_x, mk_99 = ((ratio_est(cost["mirrored"]["mkdir"], cost["plain"]["mkdir"], q) for q in (0.5, 0.99))
                   if "plain" in cost else (None, None))
    mkdir_cell = (f"p50 {stats.fmt_ratio_est(mk_x, 'no daemon')}; p99 {stats.fmt_ratio_est(mk_99, 'no daemon')}"
                  if mk_x and mk_99 else fmt_ratio(cost["mkdir_ratio"], "no daemon") + ", no interval")
    host = {"mirror_iter": (mkdir_cell + " (daemon running)",
                            f"{fmt_bytes(pop['slab_per_file_bytes'])} (one slab delta over {pop['pins']} files, "
                            "n=1)" if pop["slab_per_file_bytes"] > 0 else "no slab growth seen"),
            "prog_run": ("not measured: nothing is made per cgroup", f"{fmt_bytes(m['map_per_entry_bytes'])} "
                         "(map entry)")}
    for key, (mkdir_cell, mem_cell) in host.items():
        e = mk.get(key)
        first = _first_cell(e) if stats.is_measured(e) else _nm(e)
        if key == "mirror_iter" and stats.is_measured(e) and est(e) is not None:
            first += f" (lag p50 {stats.fmt_est(est(e))})"
        host_note = " (host)" if g else ""
        rows.append([f"{HEADLINE_HOST[key][0]} ({where})", _variants_cell(doc, HEADLINE_HOST[key][1], base, read),
                     first, *[_short(u.get(key, {}).get(c, "not measured")) + host_note for c in cols], mkdir_cell,
                     mem_cell + host_note])
    return Section("Headline", text=["Read cost against cgroupfs cpu.stat read on the same machine in the same run "
                                     "(patched kernel: the same guest boot; cpu.stat is a yardstick, not equal "
                                     "work: it prints the kernel's own, shorter text; the equal-work ratios are "
                                     "in the verdict and the equal-work table); the first read right after mkdir; "
                                     "usability checks; what one mkdir pays; memory per cgroup. Details below."],
                   tables=[(["mechanism", "read, C p50 against cpu.stat of the same machine (per declared variant)",
                             "first read right after mkdir succeeded", "cat / grep",
                             "uid 65534", "mkdir cost", "memory per cgroup"], rows)], images=["scaling.png"])


def _read_row(doc: dict[str, Any], key: str, entry: Any, churn: Any, *, base: Any, base_name: str) -> list[str]:
    if not stats.is_measured(entry):
        return [label(doc, key), *[_nm(entry)] * 7]
    c, py = entry["c"], entry.get("py", stats.not_measured("no Python loop in this run"))
    churn_x = ratio_est(churn, c, 0.99)
    value = str(c.get("value", py.get("value") if isinstance(py, dict) else "")) if stats.is_measured(c) else _nm(c)
    base_cell = stats.fmt_ratio_est(ratio_est(c, base), base_name) if stats.is_measured(c) else _nm(c)
    churn_cell = _cell(churn, 0.99) + (f" ({churn_x.value:.1f}x idle p99 [{churn_x.lo:.2f}, {churn_x.hi:.2f}])"
                                       if churn_x is not None else "")
    return [label(doc, key), _cell(c), _cell(c, 0.99), _cell(py), _cell(py, 0.99), base_cell, churn_cell,
            value or "0"]


def reads(doc: dict[str, Any]) -> Section:
    heads = ["mechanism (figure read)", "C p50 [95% CI] n", "C p99 [95% CI] n", "Python p50 [95% CI] n",
             "Python p99 [95% CI] n", "C p50 vs baseline [95% CI]", "C p99 under churn [95% CI] n", "value read"]
    base = doc["read"].get(BASELINE, {}).get("c")
    rows = []  # the host's rows only: the guest's (Approaches 1 and 2 among them) are render_guest's table
    for key, entry in doc["read"].items():
        churn = doc["churn"].get(key, stats.not_measured("not run under churn: one route per interface is "
                                                          "(mechanisms.UNDER_CHURN)"))
        rows.append(_read_row(doc, key, entry, churn, base=base, base_name="cpu.stat"))
    return Section(
        "Read cost per mechanism, stock kernel (host)",
        text=["Each mechanism reads the same cgroup (`busy`, with a sleeping task and a short CPU burn). C: "
              "bench/report/readloop.c, one timed operation each (files: open+read+close, + a parse where the "
              "row reads a number; maps and BPF_PROG_RUN: one bpf(2) call, + user-space formatting for the "
              "map's text row; per-read iterators: link+iterator+read+close). hist_oncpu's rows come in two "
              "declared variants of equal work, full text and raw value (each label says which; the equal-work "
              "section below checks them and sets each against BPF_PROG_RUN of its variant). Python: the "
              "same through the project's libbpf binding or pyroute2, to the same text or number. "
              "Churn: another process mkdirs/rmdirs cgroups nonstop beside the target (each takes cgroup_mutex). "
              "Baseline: cgroupfs v2 `cpu.stat`, same run. The patched kernel's rows are the next table's, every "
              "mechanism in the same guest boot; no ratio here divides by a guest figure.",
              _order_note(doc), _ci_note(doc)],
        tables=[(heads, rows)], images=["read_cdf_c.png", "read_cdf_python.png",
                                        *(["read_cdf_guest.png"] if any(stats.is_measured(_file(doc, k))
                                                                        for k in ("a1", "a2")) else []),
                                        "churn_p99.png"])


def _order_note(doc: dict[str, Any]) -> str:
    o = doc["meta"].get("order")
    if not isinstance(o, dict):
        return "Order: not recorded by this run (mechanisms measured one after another)."
    rounds = o["rounds"].get("read", [])
    return (f"Order: the samples of each mechanism are taken in {len(rounds)} rounds; in each round the "
            f"mechanisms run in a shuffled order (seed {o['seed']}, every round's order in results.json "
            "meta.order), so a drift of the machine spreads over all of them.")


def _ci_note(doc: dict[str, Any]) -> str:
    st = doc["meta"].get("stats", {})
    return (f"[lo, hi]: percentile bootstrap {st.get('level', stats.LEVEL) * 100:.0f} % interval of the quantile "
            f"({st.get('replicates', stats.BOOT)} replicates, seed {st.get('seed', stats.SEED)}; a ratio resamples "
            "both sides); n: samples. A ratio whose interval holds 1.0 is a tie.")


def knobs(doc: dict[str, Any]) -> Section:
    rows = []
    base = doc["knobs"].get("map_update", {}).get("c")
    for key, entry in doc["knobs"].items():
        if not stats.is_measured(entry):
            rows.append([label(doc, key), *[_nm(entry)] * 5])
            continue
        c, py = entry["c"], entry["py"]
        rows.append([label(doc, key), _cell(c), _cell(c, 0.99), _cell(py), _cell(py, 0.99),
                     stats.fmt_ratio_est(ratio_est(c, base), "map update")])
    reason = "the kernel series has no write mode yet (RFC: 'Potential Feature: File Writes')"
    rows.append(["Approach 1 file write", *["not built yet (issue 20)"] * 5])
    absent = _a2_absent(doc)
    a2_reason = _nm(absent) if absent else f"not measured: {reason}; its bpf.stat files are 0444"
    rows.append(["Approach 2 file write", *[a2_reason] * 5])
    return Section("Per-cgroup knobs (writes, the sched_ext case)",
                   text=["A u64 knob per cgroup: a cgroupfs `user.*` xattr on the cgroup directory (the maintainer's "
                         "suggestion) against a pinned BPF map keyed by cgroup id. Baseline: the map update. Here "
                         "the xattr holds the number in decimal (what a shell's setfattr writes) and the map 8 "
                         "bytes: the equal-work write (the same 8 bytes both ways) and the read from BPF are in "
                         "the next section."],
                   tables=[(["mechanism", "C p50 [95% CI] n", "C p99 [95% CI] n", "Python p50 [95% CI] n",
                             "Python p99 [95% CI] n", "C p50 vs baseline [95% CI]"], rows)])


def readable_counts(e: dict[str, Any]) -> tuple[int, int, int]:
    """A mkdir -> readable entry's (tries, readable, readable at the first read); an entry from before
    tries and readable were kept counts its samples, all readable."""
    tries = int(e.get("tries", len(e.get("samples_ns", []))))
    return tries, int(e.get("readable", tries)), round(float(e.get("first_try", 0.0)) * tries)


def readable_cell(e: dict[str, Any]) -> str:
    """'100 of 100 readable within 0.5 s; first read succeeded 97 of 100' (one definition of success)."""
    tries, ok, first = readable_counts(e)
    out = f"{ok} of {tries} readable within {e.get('timeout_s', 10)} s; first read succeeded {first} of {tries}"
    if e.get("attempts_max"):
        out += f" (worst: {e['attempts_max']} tries)"
    return out + (f"; {e['gave_up']}" if e.get("gave_up") else "")


def _first_cell(e: dict[str, Any]) -> str:
    """'97 of 100 first reads' in the headline (readable_cell's definition)."""
    tries, _, first = readable_counts(e)
    return f"{first} of {tries} first reads"


def mkdir_readable(doc: dict[str, Any]) -> Section:
    rows = []
    entries: list[tuple[str, Any]] = []
    for key in ("a1", "a2"):
        e = _file(doc, key)
        entries.append((f"{NAMES[key]} (guest, TCG)", e.get("mkdir_readable", e) if stats.is_measured(e) else e))
    g = _guest_stock_part(doc, "mkdir_readable")  # the same boots: one machine with the rows above
    if g is not None:
        entries += [(f"{label(doc, k)} (guest, TCG)", v) for k, v in g.items()]
    entries += [(f"{label(doc, k)} (host)", v) for k, v in doc["mkdir_readable"].items()]
    definition = next((e.get("definition") for _, e in entries if stats.is_measured(e) and e.get("definition")),
                      None)
    for name, e in entries:
        if not stats.is_measured(e):
            rows.append([name, _nm(e), _nm(e), _nm(e)])
            continue
        none = "none readable: no lag to show" if not e.get("samples_ns") else "not measured: no raw samples"
        rows.append([name, stats.fmt_est(est(e), none), stats.fmt_est(est(e, 0.99), none), readable_cell(e)])
    return Section("mkdir -> readable",
                   text=["Per round, each mechanism makes a cgroup of its own (mechanisms in a shuffled order): "
                         "the clock starts when mkdir(2) returns and stops at the first read of that cgroup that "
                         "succeeds, polling every 50 us. The user-space mirror runs as a daemon process, as "
                         "deployed. A mechanism readable by construction shows it as a first read that succeeds.",
                         f"Success, one definition for every row: {definition or 'not recorded by this run'}."],
                   tables=[(["mechanism", "lag p50 [95% CI] n", "lag p99 [95% CI] n",
                             "readable after mkdir (same definition for all)"], rows)])


def _link_create_cell(doc: dict[str, Any], n: int, key: str) -> str:
    lc = _bench_part(doc, "link_create")
    if not stats.is_measured(lc):
        return _nm(lc)
    row = lc.get(str(n))
    if row is None:
        return f"not measured: this run's guest plan has no {n}-cgroup tree"
    mk = _bench_part(doc, "mkdir")
    per_mkdir = stats.ratio(row[f"{key}_us_per_cgroup"], mk.get("none_mkdir_us") if stats.is_measured(mk) else None)
    return (f"{row[f'{key}_s'] * 1e3:.1f} ms ({row[f'{key}_us_per_cgroup']:.0f} us/cgroup"
            + (f" = {per_mkdir:.2f}x a mkdir" if per_mkdir is not None else "") + "; TCG)")


def _stall_row(stall: dict[str, Any], k: str) -> list[str]:
    head = [f"Approach {k[1]} link create over {stall['cgroups']} cgroups (guest, TCG)",
            f"{stall['idle_worst_ms']:.1f} ms (max of {stall.get('idle_samples', '?')})"]
    if f"{k}_worst_ms" not in stall:
        return [*head, *[f"not measured: {stall.get(f'{k}_why', 'no result')}"] * 2]
    during = (f"{stall[f'{k}_worst_ms']:.1f} ms (worst of {stall.get(f'{k}_overlapping', '?')} probe mkdirs "
              f"in flight over {stall.get(f'{k}_tries', '?')} creates)")
    if stall.get("idle_samples_ns") and stall.get(f"{k}_samples_ns"):
        return [*head, during, worst_cell({"samples_ns": stall["idle_samples_ns"]},
                                          {"samples_ns": stall[f"{k}_samples_ns"]})]
    return [*head, during, f"{stall[f'{k}_vs_idle']:.1f}x idle (maxima of unequal n: not a fair comparison)"]


def worst_cell(idle: Any, busy: Any) -> str:
    """A prober's worst mkdir idle -> during: maxima when both have the same n, else p99 (stats.worst)."""
    a, b = _samples(idle), _samples(busy)
    if not a or not b:
        # results.json from before the samples were kept: the maxima, with their n, and no ratio
        if stats.is_measured(idle) and stats.is_measured(busy):
            return (f"max {_lat(idle, 'max_us')} (n={int(idle['summary']['n'])}) -> {_lat(busy, 'max_us')} "
                    f"(n={int(busy['summary']['n'])}): unequal n, not compared")
        return _nm(idle if not stats.is_measured(idle) else busy)
    w = stats.worst(a, b)
    if w is None:
        return "not measured: no prober samples"
    out = f"{w.stat} {fmt_us(w.a / 1e3)} (n={w.n_a}) -> {fmt_us(w.b / 1e3)} (n={w.n_b})"
    if w.ci is not None:
        out += f": {w.ci.value:.2f}x [{w.ci.lo:.2f}, {w.ci.hi:.2f}]"
    elif w.x is not None:
        out += f": {w.x:.2f}x (maxima at equal n, no interval)"
    return out


def populate(doc: dict[str, Any]) -> Section:
    rows = []
    for p in doc["populate"]:
        n = p["cgroups"]
        rows.append([
            str(n), f"{p['first_pass_ns'] / 1e6:.1f} ms ({p['per_cgroup_us']:.0f} us/cgroup), n=1",
            f"{p['mkdir_ns'] / 1e6:.1f} ms, n=1", f"{fmt_ratio(p['ratio_vs_mkdir'], 'mkdir')}, n=1/1: no interval",
            worst_cell(p["probe_idle"], p["probe_during_pass"]),
            _link_create_cell(doc, n, "a1"), _link_create_cell(doc, n, "a2")])
    stall = _bench_part(doc, "stall")
    if stats.is_measured(stall):
        stall_rows = [_stall_row(stall, k) for k in ("a1", "a2")]
    else:
        why = _nm(stall)
        stall_rows = [[f"Approach {k} link create", why, why, why] for k in ("1", "2")]
    return Section("Populate vs number of cgroups",
                   text=["User-space mirror (host): its first full pass over N existing cgroups (programs already "
                         "loaded; it holds no cgroup_mutex across the pass, each pin is its own syscall); baseline: "
                         "the mkdir of those N cgroups, same run. Worst mkdir: a concurrent mkdir loop's worst "
                         "latency, idle -> during the pass: maxima only when both sides have the same n, else p99 "
                         "with its interval. Approaches 1 and 2 (guest, kernel-approach2/bench/"
                         "bench_a2.py in the same boot): Approach 2's link create walks the tree under cgroup_mutex, "
                         "so its duration is the cgroup_mutex hold; Approach 1's walks it under RCU and a mutex of "
                         "its own, holding cgroup_mutex for no step; per cgroup each is compared with one mkdir "
                         "of the same boot (median, no link). N+1 cgroups: the tree and its root. Stall: a C mkdir "
                         "loop on CPU 1 while link create runs on CPU 0; only its mkdirs in flight during the create "
                         "count (single-threaded TCG runs one vCPU at a time, so one create may meet few: the worst "
                         "of 5 creates)."],
                   tables=[(["cgroups", "mirror first pass", "mkdir of them", "ratio", "worst concurrent mkdir",
                             "A1 link create (no cgroup_mutex hold)", "A2 link create (cgroup_mutex hold)"], rows),
                           (["stall: worst mkdir of another process (CPU 1) while", "idle", "during", "ratio"],
                            stall_rows)],
                   images=["scaling.png"])


def _links_row(mk: dict[str, Any], key: str, k: str) -> list[str]:
    r, sm = mk[k], mk.get("samples_ns")
    name = f"Approach {key[1]}: {k} link{'s' if k != '1' else ''} covering the cgroup (guest, TCG)"
    if isinstance(sm, dict) and f"{key}:{k}" in sm:  # every round kept: medians with intervals
        cells = []
        for op in ("mkdir", "rmdir"):
            base, under = sm["none"][op], sm[f"{key}:{k}"][op]
            cells.append(f"{stats.fmt_est(stats.estimate(base, scale=1e-3))} -> "
                         f"{stats.fmt_est(stats.estimate(under, scale=1e-3))} "
                         f"({stats.fmt_ratio_est(stats.ratio_est(under, base), 'no link')})")
        return [name, *cells, f"1 cgroup, {mk['rounds']} rounds per condition, conditions interleaved"]
    return [name,
            f"{mk['none_mkdir_us']:.0f} -> {r[f'{key}_mkdir_us']:.0f} us ({r[f'{key}_mkdir_vs_none']:.2f}x no link)",
            f"{mk['none_rmdir_us']:.0f} -> {r[f'{key}_rmdir_us']:.0f} us ({r[f'{key}_rmdir_vs_none']:.2f}x no link)",
            f"1 cgroup, median of {mk['rounds']} rounds, no interval"]


def _mirror_cost_row(c: dict[str, Any], where: str) -> list[str]:
    """mkdir/rmdir of N cgroups without -> with the mirror daemon (measures.mkdir_cost), on `where`."""
    n = c["cgroups"]
    if "plain" in c:  # each call timed: medians with intervals
        return [f"user-space mirror daemon running ({where})",
                *["; ".join(f"{q}: {_cell(c['plain'][op], qv)} -> {_cell(c['mirrored'][op], qv)} "
                            f"({stats.fmt_ratio_est(ratio_est(c['mirrored'][op], c['plain'][op], qv), 'no daemon')})"
                            for q, qv in (("p50", 0.5), ("p99", 0.99)))
                  + f"; total {fmt_ratio(c[f'{op}_ratio'], 'no daemon')}" for op in ("mkdir", "rmdir")],
                f"{n} cgroups each way, every call timed, in {len(c['rounds'])} rounds (order shuffled)"]
    # a results.json from before: totals only
    return [f"user-space mirror daemon running ({where})", f"{c['mkdir_plain_ns'] / n / 1e3:.1f} -> "
            f"{c['mkdir_mirrored_ns'] / n / 1e3:.1f} us ({fmt_ratio(c['mkdir_ratio'], 'no daemon')})",
            f"{c['rmdir_plain_ns'] / n / 1e3:.1f} -> {c['rmdir_mirrored_ns'] / n / 1e3:.1f} us "
            f"({fmt_ratio(c['rmdir_ratio'], 'no daemon')})", f"{n} cgroups, total / {n}, no interval"]


def _guest_stock_part(doc: dict[str, Any], part: str) -> dict[str, Any] | None:
    """One measured part of the guest's stock rows (render_guest.stock), else None."""
    from bpffs_sync.measure.report.render_guest import stock

    st = stock(doc)
    got = st.get(part) if stats.is_measured(st) else None
    return got if stats.is_measured(got) else None


def mkdir_cost(doc: dict[str, Any]) -> Section:
    rows = [_mirror_cost_row(doc["mkdir_cost"], "host")]
    g = _guest_stock_part(doc, "mkdir_cost")
    if g is not None:  # the same boots as the series' rows below
        rows.insert(0, _mirror_cost_row(g, "guest, TCG"))
    mk = _bench_part(doc, "mkdir")
    for key in ("a1", "a2"):
        if stats.is_measured(mk):
            rows += [_links_row(mk, key, k) for k in ("1", "4") if k in mk]
        else:
            why = _nm(mk)
            rows.append([f"Approach {key[1]} links", why, why, why])
    return Section("Cost added to mkdir and rmdir",
                   text=["Without -> with the mechanism, same run. User-space mirror: mkdir and rmdir of N "
                         "cgroups without and with its daemon running, every call timed, the two in shuffled "
                         "rounds; its code runs in the daemon, not in mkdir(2), so a ratio above 1 is the "
                         "daemon's work on the same CPUs. Approaches 1 and 2 make their files inside mkdir and "
                         "rmdir, one per covering link: mkdir/rmdir of one cgroup under 0, 1 and 4 links in one "
                         "guest boot (kernel-approach2/bench/bench_a2.py: medians, no samples, so no interval)."],
                   tables=[(["with", "mkdir", "rmdir", "sample"], rows)])


def _slab_cell(doc: dict[str, Any], key: str) -> str:
    s = _bench_part(doc, "slab_per_file")
    if not stats.is_measured(s):
        return _nm(s)
    v = s[f"{key}_bytes_per_file"]
    return (f"{fmt_bytes(v)} per file (slab delta over {s['files']} cgroups, median of 2; guest)" if v > 0 else
            f"no slab growth seen over {s['files']} files (delta {fmt_bytes(v * s['files'])}: other activity)")


def memory(doc: dict[str, Any]) -> Section:
    m = doc["memory"]
    pop = doc["populate"][-1]
    slab = pop["slab_per_file_bytes"]
    rows = [
        ["user-space mirror: one pinned iterator + bpffs dir per cgroup",
         (f"{fmt_bytes(slab)} per file (one slab delta over {pop['pins']} files, n=1)" if slab > 0 else
          f"no slab growth seen over {pop['pins']} files (delta {fmt_bytes(slab * pop['pins'])}: other activity)")],
        ["pinned stats map (BPF_PROG_RUN, map lookup share it)",
         f"{fmt_bytes(m['map_per_entry_bytes'])} per entry, preallocated: {fmt_bytes(m['map_memlock_bytes'])} "
         f"for {m['map_max_entries']} entries"],
        ["cgroupfs user.* xattr (8-byte value)",
         f"{fmt_bytes(m['xattr_per_cgroup_bytes'])} per cgroup (one slab delta over {m['xattr_cgroups']}, n=1)"],
        ["Approach 1 file: bpffs dentry+inode per cgroup (guest)", _slab_cell(doc, "a1")],
        ["Approach 2 file: kernfs node per cgroup (guest)", _slab_cell(doc, "a2")],
    ]
    return Section("Memory per mirrored cgroup", tables=[(["state", "bytes"], rows)])


def loc(doc: dict[str, Any]) -> Section:
    rows = []
    for key, name in (("a1_file", "Approach 1 (kernel-approach1/patches)"),
                      ("a2_file", "Approach 2 (kernel-approach2/patches)")):
        e = doc["loc"][key]
        rows.append([name, str(e["kernel"]), str(e["tools"]), str(e["selftests"])] if stats.is_measured(e)
                    else [name, _nm(e), _nm(e), _nm(e)])
    e = doc["loc"].get("shared", stats.not_measured("not counted by this report's version"))
    rows.append(["of which shared prerequisites, in both series (kernel-approach2/prereqs)",
                 *([str(e["kernel"]), str(e["tools"]), str(e["selftests"])] if stats.is_measured(e) else [_nm(e)] * 3)])
    rows.append(["stock-kernel mechanisms (mirror, BPF_PROG_RUN, map, xattr)", "0", "0", "0"])
    return Section("Kernel code per approach",
                   text=["Lines added by each series' patches (cover letter excluded), counted in this run. "
                         "Each series carries the prerequisites both need (program type, link UAPI, "
                         "cgroup_walk_next(), libbpf), so each row counts all it needs to apply on 7.3 alone."],
                   tables=[(["approach", "kernel lines", "tools lines (uapi copy, libbpf)", "selftest lines"], rows)])


def usability(doc: dict[str, Any]) -> Section:
    from bpffs_sync.measure.report.usability import v1_cell

    u = doc["usability"]
    cols = u["columns"]
    rows = [[label(doc, k) if k != "xattr" else "cgroupfs user.* xattr", *[r[c] for c in cols]]
            for k, r in u["rows"].items()]
    for i, key in enumerate(("a1", "a2")):
        e = _file(doc, key)
        cells = e.get("usability") if stats.is_measured(e) else None
        rows.insert(i, [f"{NAMES[key]} (guest)",
                        *([v1_cell(key, str(cells.get(c, "not measured: no guest check"))) if c == "cgroup v1" else
                           str(cells.get(c, "not measured: no guest check")) for c in cols] if isinstance(cells, dict)
                          else [_nm(e)] * len(cols))])
    return Section("Usability",
                   text=["Every cell is a check run in this report: `cat | grep` in a shell (for a pinned program or "
                         "map, the shell user's tool instead: a ten-line libbpf helper, `bpftool`), the C loop run "
                         "as uid 65534 with the pin mode a deployment would use (each cell names it: the mirror's "
                         "files as the daemon makes them, 0444 root; a program or map pin 0660 root:<readers' "
                         "group>, the reader in it, since BPF_OBJ_GET of a program pin is read-write only), the "
                         "mechanism pointed at the cgroup-v1 cpu hierarchy, a read after rmdir (the mirror's file "
                         "with its daemon running), and the mirror daemon killed with SIGKILL. Patched kernel "
                         "(guest): the same checks, v1 on a named v1 hierarchy mounted for it beside what the "
                         "series' design says ('not built in our series' where the check fails), and 'daemon "
                         "crash' as: the loader pins the link and exits, then a cgroup is made."],
                   tables=[(["mechanism", *cols], rows)])


def sections(doc: dict[str, Any]) -> list[Section]:
    from bpffs_sync.measure.report.render_equal import section as equal_work
    from bpffs_sync.measure.report.render_guest import crosscheck, one_boot
    from bpffs_sync.measure.report.render_knob import section as knob_reads
    from bpffs_sync.measure.report.render_scrape import section as scrape
    from bpffs_sync.measure.report.verdict import verdict

    return [environment(doc), headline_section(doc), verdict(doc), reads(doc), one_boot(doc),
            crosscheck(doc), equal_work(doc), knobs(doc),
            knob_reads(doc), mkdir_readable(doc),
            populate(doc), scrape(doc), mkdir_cost(doc), memory(doc), loc(doc), usability(doc),
            Section("Closing note: the headline ratios of this run",
                    text=["\n".join(f"- {line}" for line in headline(doc))])]


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
    from bpffs_sync.measure.report.mechanisms import ROUTES
    from bpffs_sync.measure.report.verdict import approach

    r, base = doc["read"], doc["read"].get(BASELINE, {}).get("c")
    lines = []
    for variant, keys in ROUTES.items():
        for key in keys:
            e = r.get(key)
            if stats.is_measured(e) and stats.is_measured(e["c"]):
                lines.append(f"{key} ({variant}): C p50 {_cell(e['c'])}, "
                             f"{stats.fmt_ratio_est(ratio_est(e['c'], base), 'cpu.stat')}")
    for key in ("a1", "a2"):
        a = approach(doc, key)
        if a.read_x_cpu is None:
            lines.append(f"{key}_file: {_nm(_file(doc, key))}")
            continue
        line = f"{key}_file (guest, TCG): C p50 {stats.fmt_ratio_est(a.read_x_cpu, 'cpu.stat of the same boot')}"
        if a.mk is not None:
            line += f", first read after mkdir {a.mk.first} of {a.mk.tries}"
        if a.hold_s is not None and a.hold_x_mkdir is not None:
            line += f", link create {a.hold_x_mkdir:.2f}x a mkdir per cgroup"
        if a.mkdir_x is not None:
            line += f", mkdir under 1 link {a.mkdir_x:.2f}x (median, no interval)"
        lines.append(line)
    return lines
