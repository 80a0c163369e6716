"""The scrape table (report/scrape.py's results) as a report section, and its JSON block (the same
figures for results.json's scrape.summary). Pure: results in, text and dicts out.

Every time cell is the median of the scrapes with its bootstrap 95 % interval and n (stats.estimate);
every ratio is against cgroupfs cpu.stat x N of the same set in the same run, both sides resampled
(stats.ratio_est); a route that did not run says why (the measurement's own reason).
"""

from __future__ import annotations

from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.render import Section, _nm

BASELINE = "cpu_stat"
SIZES = (100, 1000, 10000)
MS = 1e-6  # ns -> ms
SEE_LEFT = "not measured (why: the CPU cell)"


def set_name(s: dict[str, Any]) -> str:
    return f"{s['n']} flat" if s["shape"] == "flat" else f"{s['n']}, chains of depth {s['depth']}"


def _num(v: float) -> str:
    """3 significant figures without an exponent: 0.308, 4.12, 41.2, 1360."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def fmt_ms(e: stats.Est | None) -> str:
    """'4.12 ms [3.98, 4.3] n=5'."""
    if e is None:
        return "not measured: no samples"
    return f"{_num(e.value)} ms [{_num(e.lo)}, {_num(e.hi)}] n={e.n}"


def _est(entry: dict[str, Any] | None, col: str) -> stats.Est | None:
    return stats.estimate(entry[col], scale=MS) if stats.is_measured(entry) and entry.get(col) else None


def _ratio(entry: dict[str, Any] | None, base: dict[str, Any] | None, col: str = "cpu_ns") -> stats.RatioEst | None:
    if not (stats.is_measured(entry) and stats.is_measured(base) and entry.get(col) and base.get(col)):
        return None
    return stats.ratio_est(entry[col], base[col])


def _values_cell(entry: dict[str, Any], n: int, key: str) -> str:
    cell = f"{entry.get('count', 0)} of {n}"
    if "same_as_files" in entry and key != "files":
        if entry["same_as_files"] is None:
            return cell + "; equal to the files' value: not compared (the files route gave no values)"
        cell += f"; equal to the files' value: {entry['same_as_files']} of {n}"
        if _differs(entry, n):
            cell += " (DIFFERS: another figure, or a moving one)"
    return cell


def _differs(entry: dict[str, Any], n: int) -> bool:
    """A hist_oncpu route whose last scrape did not return the files' value for every cgroup."""
    return entry.get("same_as_files") not in (None, n)


def _per_cgroup(e: stats.Est | None, n: int) -> str:
    """The CPU cell divided by N: its median and interval, per cgroup, in us."""
    if e is None:
        return "not measured: no samples"
    return f"{e.value * 1000 / n:.2f} us [{e.lo * 1000 / n:.2f}, {e.hi * 1000 / n:.2f}] n={e.n}"


def set_rows(s: dict[str, Any], labels: dict[str, str]) -> list[list[str]]:
    """One row per route of one set."""
    rows = []
    routes, n = s["routes"], s["n"]
    base = routes.get(BASELINE)
    for key, entry in routes.items():
        name = [set_name(s), labels.get(key, key)]
        if not stats.is_measured(entry):
            rows.append([*name, _nm(entry), *[SEE_LEFT] * 4])
            continue
        cpu = _est(entry, "cpu_ns")
        ratio = ("the baseline" if key == BASELINE
                 else "no ratio: its values differ from the files' (the values column)" if _differs(entry, n)
                 else stats.fmt_ratio_est(_ratio(entry, base), "cpu.stat x N") if stats.is_measured(base)
                 else f"no ratio: cpu.stat x N {_nm(base)}")
        rows.append([*name, fmt_ms(cpu), fmt_ms(_est(entry, "wall_ns")), ratio, _per_cgroup(cpu, n),
                     _values_cell(entry, n, key)])
    return rows


def _find(doc: dict[str, Any], shape: str, n: int) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = [s for s in doc["sets"] if s["shape"] == shape and s["n"] == n]
    return found[0] if found else None


def _growth_cell(doc: dict[str, Any], key: str, big: tuple[str, int], small: tuple[str, int]) -> str:
    """CPU per scrape of `big` over `small` for one route, with its interval."""
    b, a = _find(doc, *big), _find(doc, *small)
    for s, (shape, n) in ((b, big), (a, small)):
        if s is None:
            return f"not measured: no {shape} set of {n} cgroups in this run"
        if not stats.is_measured(s["routes"].get(key)):
            return f"not measured at {n} ({shape}): why in the table above"
    assert a is not None and b is not None
    return stats.fmt_ratio_est(_ratio(b["routes"][key], a["routes"][key]), f"{small[1]} {small[0]}")


GROWTH = (("N 100 -> 1000 (flat)", ("flat", 1000), ("flat", 100)),
          ("N 1000 -> 10000 (flat)", ("flat", 10000), ("flat", 1000)),
          ("flat -> depth 8 (N 1000)", ("depth", 1000), ("flat", 1000)))


def growth_rows(doc: dict[str, Any], labels: dict[str, str]) -> list[list[str]]:
    keys = list(doc["sets"][0]["routes"]) if doc["sets"] else []
    return [[labels.get(k, k), *[_growth_cell(doc, k, big, small) for _, big, small in GROWTH]] for k in keys]


HEADS = ["cgroups", "route", "CPU per scrape p50 [95% CI] n", "wall per scrape p50 [95% CI] n",
         "CPU vs cpu.stat x N [95% CI]", "CPU per cgroup (p50 / N) [95% CI / N] n", "values returned (count check)"]


def section(doc: dict[str, Any]) -> Section:
    title = "Scale: one scrape of every cgroup, as monitoring does it"
    sc = doc.get("scrape")
    if not stats.is_measured(sc) or not isinstance(sc, dict):
        return Section(title, tables=[(["", "value"], [["scrape", _nm(sc) if isinstance(sc, dict) else
                                                        "not measured: this results.json has no scrape"]])])
    labels: dict[str, str] = sc["routes"]
    rows = [r for s in sc["sets"] for r in set_rows(s, labels)]
    return Section(title, text=[
        "A scraper reads the on-CPU time of every cgroup of a set, once per scrape, from Python on this host "
        "(stock kernel): hist_oncpu's total_ns on every route but the baseline, which reads the kernel's own "
        "figure (cpu.stat: usage_usec, a text of its own), so the ratio column compares scrapes, not equal work. "
        f"The sets: N cgroups side by side, and 1000 as chains of depth {sc['depth']}; each cgroup ran a task "
        "once, so the stats map has an entry for each. Every route reads the same cgroups and must return one "
        "value for each (the count check; the cpu.stat routes read one file per cgroup, so for them it shows only "
        "that every read succeeded; a route that fails it, or cannot run, says why); a hist_oncpu route whose "
        "values differ from the files' in its last scrape gets no ratio. CPU: this thread's CPU time "
        "(time.thread_time_ns: user + kernel, so the kernel's work inside our syscalls counts). Each route's first "
        "scrape is an untimed warm-up; then "
        f"{sc['scrapes']} timed scrapes per route, the routes in a seeded shuffled order per round (seed "
        f"{sc['seed']}, the orders in results.json scrape.sets[].order); the sets themselves are made and measured "
        "one after another, not interleaved, so the growth table carries any drift between them too. Baseline: "
        "cpu.stat x N of the same set, same run. The files, the held files and iter_hist parse the mirror's text "
        "(a block of lines a cgroup); iter_lines parses one short line a cgroup; the binary routes (BPF_PROG_RUN, "
        "batch, ring) unpack total_ns from the raw struct.", prepared(sc)],
        tables=[(HEADS, rows),
                (["route: CPU per scrape, growth [95% CI]", *[g[0] for g in GROWTH]], growth_rows(sc, labels))])


def prepared(sc: dict[str, Any]) -> str:
    """What making each set took (not part of any scrape), and the cgroups charged a second time."""
    parts = [f"{set_name(s)}: {s['prepare_s']:.1f} s" + (f", {s['recharged']} charged twice" if s.get("recharged")
                                                          else "") for s in sc["sets"]]
    return ("Making each set (mkdir, a task run in each cgroup, the mirror's pass; not timed as a scrape): "
            + "; ".join(parts) + f". The whole table took {sc['duration_s']:.0f} s.")


def _est_json(e: stats.Est | None) -> dict[str, Any] | None:
    return None if e is None else {"p50_ms": e.value, "lo": e.lo, "hi": e.hi, "n": e.n}


def _ratio_json(r: stats.RatioEst | None) -> dict[str, Any] | None:
    return None if r is None else {"x": r.value, "lo": r.lo, "hi": r.hi, "n": [r.n_num, r.n_den]}


def summary(sc: dict[str, Any]) -> dict[str, Any]:
    """The table's figures as JSON (results.json scrape.summary): per set and route the CPU and wall
    medians with intervals, the ratio to cpu.stat x N, the count; or why it was not measured."""
    out: dict[str, Any] = {}
    for s in sc["sets"]:
        base = s["routes"].get(BASELINE)
        cells: dict[str, Any] = {}
        for key, entry in s["routes"].items():
            cells[key] = entry if not stats.is_measured(entry) else {
                "cpu": _est_json(_est(entry, "cpu_ns")), "wall": _est_json(_est(entry, "wall_ns")),
                "cpu_x_cpu_stat": _ratio_json(_ratio(entry, base)), "count": entry.get("count"),
                "same_as_files": entry.get("same_as_files")}
        out[f"{s['shape']}-{s['n']}"] = cells
    return out
