"""The equal-work section (issue 22, Build 1): hist_oncpu's read routes in two declared variants, the
check that every route of a variant produced the same output (equal.py, results.json["equal_work"]),
each route's cost against BPF_PROG_RUN of the same variant, and the per-syscall breakdown
(results.json["breakdown"]). Pure: results.json in, a Section out (tests/test_report_equal.py)."""

from __future__ import annotations

from typing import Any

from bpffs_sync.measure.report import equal, stats
from bpffs_sync.measure.report.mechanisms import FULL, RAW, ROUTES
from bpffs_sync.measure.report.render import Section, _cell, _nm, est, ratio_est

PROG = {FULL: "prog_run_text", RAW: "prog_run"}  # each variant's denominator: BPF_PROG_RUN
ROUTE_NAMES = {
    "mirror_iter": "file: the user-space mirror's pinned iterator (open, read, close)",
    "iter_per_read": "file: a cgroup iterator made per read (link, iterator, read, close)",
    "prog_run_text": "BPF_PROG_RUN of stat_text: the program writes the text into its context",
    "map_text": "map lookup + the text formatted in user space (C: snprintf; Python: format_stat)",
    "total_file": "file: a pinned iterator of total_only, printing total_ns alone (open, read, close, parse)",
    "iter_total_per_read": "file: total_only's iterator made per read (link, iterator, read, close, parse)",
    "prog_run": "BPF_PROG_RUN of stat_by_id: the raw struct in its context, total_ns taken from it",
    "map_lookup": "map lookup: the raw struct, total_ns taken from it (no formatting)",
}
PHASE_HEADS = (("open", "open()"), ("read", "read()"), ("close", "close()"), ("bpf", "bpf()"),
               ("rest", "rest: user space (parse, format) and the clock reads"), ("total", "total, clocks included"))
NO_CHECK = "not checked: a results.json from before the equal-work check"


def _loop_cell(variant: str, loop: str, row: dict[str, Any], reference: str) -> str:
    name = {"c": "C", "py": "Python"}[loop]
    if "cannot" in row:
        return f"{name}: cannot: {row['cannot']}"
    if variant == FULL:
        what = f"{row['bytes']} bytes, sha256 {row['sha256'][:12]}"
        if row["same"]:
            return f"{name}: {what}" + (" (the reference)" if reference.endswith(f":{loop}") else ", the same")
        return f"{name}: NOT the same: {what}, first difference at byte {row['first_difference']}"
    if row["same"]:
        return f"{name}: {row['value']}" + (" (the reference)" if reference.endswith(f":{loop}") else ", the same")
    return f"{name}: NOT the same number: {row['value']}"


def output_cell(doc: dict[str, Any], variant: str, key: str) -> str:
    """What the route produced in the run's one check, per loop, or why it has no output."""
    check = doc.get("equal_work", {}).get(variant)
    if not isinstance(check, dict):
        return NO_CHECK
    if key in check["cannot"]:
        return f"cannot: {check['cannot'][key]}"
    rows = check["routes"].get(key)
    if rows is None:
        return "cannot: not run here"
    ref = str(check.get("reference") or "")
    return "; ".join(_loop_cell(variant, loop, rows[loop], ref if ref.startswith(f"{key}:") else "")
                     for loop in equal.LOOPS if loop in rows)


def equal_work(doc: dict[str, Any], variant: str, key: str) -> bool | None:
    """True: the route produced the variant's reference in both loops this run; False: it produced
    something else; None: not checked (an old results.json, the route had no output, or the check
    was void: nothing to compare, or a zero reference)."""
    check = doc.get("equal_work", {}).get(variant)
    if not isinstance(check, dict) or key not in check["routes"] or check.get("void"):
        return None
    rows = check["routes"][key].values()
    if any("cannot" not in r and not r["same"] for r in rows):
        return False
    return True if all("cannot" not in r for r in rows) else None


def c_equal_work(doc: dict[str, Any], variant: str, key: str) -> bool | None:
    """equal_work() for the route's C output alone (what the ratio column compares)."""
    check = doc.get("equal_work", {}).get(variant)
    if not isinstance(check, dict) or key not in check["routes"] or check.get("void"):
        return None
    row = check["routes"][key].get("c", {})
    return None if "same" not in row else bool(row["same"])


def _failure(check: dict[str, Any]) -> str:
    """Why a check did not hold: the routes that differ, and why it was void."""
    return "; ".join([*check["differ"], *([check["void"]] if check.get("void") else [])]) or \
        "no route produced an output"


def check_sentence(doc: dict[str, Any], variant: str) -> str:
    """One line per variant: what was compared and whether it held."""
    check = doc.get("equal_work", {}).get(variant)
    if not isinstance(check, dict):
        return f"{variant}: {NO_CHECK}."
    routes = ", ".join(f"{k} ({'/'.join(equal.LOOPS)})" for k in check["routes"])
    what = (f"the same {check['bytes']} bytes (sha256 {check['sha256'][:12]})" if variant == FULL and "bytes" in check
            else f"the same number, {check['value']}" if "value" in check else "an output")
    head = f"{variant}: {routes}, against {check.get('reference') or 'no reference'}: "
    if check["equal"]:
        gaps = [f"{k}: {why}" for k, why in check["cannot"].items() if ":" in k]
        return head + f"every route produced {what}" + (f"; no output from {'; '.join(gaps)}" if gaps else "") + "."
    return head + f"NOT shown equal: {_failure(check)}."


def problems(doc: dict[str, Any]) -> list[str]:
    """The equal-work check's failures, one line per variant that failed (the CLI exits 1 on any;
    a results.json from before the check has none)."""
    out = []
    for variant in (FULL, RAW):
        check = doc.get("equal_work", {}).get(variant)
        if isinstance(check, dict) and not check["equal"]:
            out.append(f"equal work ({variant}): {_failure(check)}")
    return out


def _ratio_cell(doc: dict[str, Any], variant: str, key: str) -> str:
    prog = PROG[variant]
    if key == prog:
        return "the variant's baseline"
    got = (c_equal_work(doc, variant, key), c_equal_work(doc, variant, prog))
    if False in got:
        return "not equal work: the outputs differ (see the output column), no ratio"
    if None in got:
        return "no ratio: equal work not shown for both C outputs (see the output column and the check above)"
    e, p = doc["read"].get(key), doc["read"].get(prog)
    if not (stats.is_measured(e) and stats.is_measured(p)):
        return _nm(e if not stats.is_measured(e) else p)
    return stats.fmt_ratio_est(ratio_est(e["c"], p["c"]), "BPF_PROG_RUN")


def _timings(doc: dict[str, Any], key: str) -> list[str]:
    e = doc["read"].get(key)
    if not stats.is_measured(e):
        return [_nm(e)] * 2
    return [_cell(e["c"]), _cell(e.get("py", stats.not_measured("no Python loop in this run")))]


def _phase_cell(entry: dict[str, Any] | None) -> str:
    if not stats.is_measured(entry) or not entry.get("samples_ns"):
        return _nm(entry)
    if not any(entry["samples_ns"]):
        return "no such call"
    return stats.fmt_est(est(entry))


def _others(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in doc.get("mechanisms", []) if m.get("kind") == "read" and not m.get("variant")]


def _text_size(doc: dict[str, Any]) -> str:
    """The checked text's size in this run ("20 lines, 1600 bytes"), or that it was not checked."""
    check = doc.get("equal_work", {}).get(FULL)
    if not isinstance(check, dict) or "text" not in check:
        return "its size not checked in this run"
    return f"{check['text'].count(chr(10))} lines, {check['bytes']} bytes in this run"


def section(doc: dict[str, Any]) -> Section:
    rows, split = [], []
    breakdown = doc.get("breakdown", {})
    for variant in (FULL, RAW):
        for key in ROUTES[variant]:
            if key not in doc["read"]:
                continue
            name = ROUTE_NAMES.get(key, key)
            rows.append([variant, name, output_cell(doc, variant, key), *_timings(doc, key),
                         _ratio_cell(doc, variant, key)])
            b = breakdown.get(key, stats.not_measured("no per-syscall breakdown in this run"))
            split.append([variant, name, *([_phase_cell(b.get(p)) for p, _ in PHASE_HEADS] if stats.is_measured(b)
                                           else [_nm(b)] * len(PHASE_HEADS))])
    for m in _others(doc):
        key = m["key"]
        why = equal.cannot_reason(FULL, m["what"]).replace("hist_oncpu's text", "hist_oncpu's text or total_ns")
        rows.append(["neither (another figure)", m["label"], f"cannot: {why}", *_timings(doc, key),
                     "not compared: another figure"])
        b = breakdown.get(key)
        if b is not None:
            split.append(["neither (another figure)", m["label"],
                          *([_phase_cell(b.get(p)) for p, _ in PHASE_HEADS] if stats.is_measured(b)
                            else [_nm(b)] * len(PHASE_HEADS))])
    return Section(
        "Equal work: every route in two declared variants",
        text=["hist_oncpu's read, every route doing the same work. Full text: the route ends with the program's "
              f"whole text (cgroup_id, total_ns, slices, the log2 histogram; {_text_size(doc)}) in a user-space "
              "buffer, unparsed; BPF_PROG_RUN runs stat_text, which formats that text with bpf_snprintf() into its "
              "context. Raw value: the route ends with total_ns as a number; the file route's program "
              "(total_only) prints that number alone. C: bench/report/readloop.c; Python: the same through the "
              "project's libbpf binding. Ratios: against BPF_PROG_RUN of the same variant, same run.",
              "Equal work, checked by code once in this run (results.json equal_work), C and Python outputs of "
              "every route against the file's C output: "
              + " ".join(check_sentence(doc, v) for v in (FULL, RAW)),
              "Per-syscall breakdown: a separate run of the C loop with clock_gettime() around each syscall "
              "(its totals include those clock reads, so the table above takes its totals from the loop "
              "without them); bpf() sums every bpf(2) call of the operation (an iterator made per read: link "
              "create and iterator create); rest is the total less the syscalls."],
        tables=[(["variant", "route", "output (checked once this run)", "C p50 [95% CI] n",
                  "Python p50 [95% CI] n", "C p50 vs BPF_PROG_RUN, same variant [95% CI]"], rows),
                (["variant", "route", *[h for _, h in PHASE_HEADS]], split)])
