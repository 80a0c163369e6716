"""The knob section and the verdict's knob sentence (issue 22, item 5), from results.json's "knob"
(knob.py): the BPF-side read in sched_switch, the user-space write, and who may write. The sentence
is a pure function of KnobFigures (tests/test_report_knob_unit.py has its table of inputs ->
sentence); a figure that was not measured is named, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.render import Section, _cell, _nm, est, ratio_est
from bpffs_sync.measure.report.stats import Est, RatioEst

NOT_BUILT = "not built yet (issue 20)"  # Approach 1's writable file
_WORD = {"higher": "dearer", "lower": "cheaper", "tie": "not shown dearer or cheaper"}
READ_ROUTES = {"xattr": "bpf_cgroup_read_xattr() of the cgroup's user.* xattr",
               "map": "map lookup by cgroup id (cgrp->kn->id, struct cg_key), the u64 copied out",
               "clock": "the clock pair alone (bpf_ktime_get_ns twice, nothing between): inside every row"}
WRITE_ROUTES = {"xattr_set": "setxattr(2) of the 8 bytes on the cgroup directory",
                "map_update": "bpf_map_update_elem through the map's bpffs pin"}


@dataclass(frozen=True, slots=True)
class KnobFigures:
    """The numbers and checks the knob sentence is made of (None: not measured)."""

    xattr: Est | None = None  # BPF-side read p50, us
    map: Est | None = None
    clock: Est | None = None
    read_x: RatioEst | None = None  # xattr read / map lookup
    equal: bool | None = None  # both routes read the same 8 bytes, no read failed
    read_missing: str = ""  # why the read was not measured
    write_x: RatioEst | None = None  # setxattr / map update
    who: dict[str, dict[str, str]] | None = None  # subject -> column -> cell


def figures(doc: dict[str, Any]) -> KnobFigures:
    k = doc.get("knob")
    if not isinstance(k, dict):
        return KnobFigures(read_missing="the knob measure did not run")
    r, w, who = k.get("read"), k.get("write"), k.get("who")
    if not stats.is_measured(r):
        return KnobFigures(read_missing=_nm(r).removeprefix("not measured: "),
                           write_x=ratio_est(w.get("xattr_set"), w.get("map_update")) if stats.is_measured(w)
                           else None, who=who["rows"] if stats.is_measured(who) else None)
    xattr, mp = r.get("xattr"), r.get("map")
    return KnobFigures(
        xattr=est(xattr), map=est(mp), clock=est(r.get("clock")), read_x=ratio_est(xattr, mp),
        equal=bool(r.get("equal")),
        write_x=ratio_est(w.get("xattr_set"), w.get("map_update")) if stats.is_measured(w) else None,
        who=who["rows"] if stats.is_measured(who) else None)


def _rx(r: RatioEst) -> str:
    return f"{r.value:.2f}x [{r.lo:.2f}, {r.hi:.2f}], n={r.n_num}/{r.n_den}"


def _who_yes(who: dict[str, dict[str, str]], column: str) -> list[str]:
    return [s for s, cells in who.items() if cells.get(column, "").startswith("yes")]


def _who_part(who: dict[str, dict[str, str]] | None) -> str:
    if not who:
        return "who may write: not measured"
    columns = list(next(iter(who.values())))
    return "who may write (a check each): " + "; ".join(
        f"{c}: {', '.join(_who_yes(who, c)) or 'nobody'}" for c in columns)


def _delegated(who: dict[str, dict[str, str]] | None) -> bool | None:
    """Whether the delegated owner wrote its cgroup's xattr, outside and inside a cgroup namespace."""
    if not who:
        return None
    xattr = next((c for c in next(iter(who.values())) if c.startswith("setxattr")), None)
    if xattr is None:
        return None
    owners = [s for s in who if s.startswith("delegated owner")]
    return bool(owners) and all(who[s].get(xattr, "").startswith("yes") for s in owners)


def knob_sentence(f: KnobFigures) -> str:
    """Are xattrs enough for a per-cgroup knob (Tejun): the BPF-side read in the scheduling path
    against a map lookup (equal work: the same 8 bytes), the user-space write, who may write."""
    if f.read_missing or f.read_x is None:
        read = f"the BPF-side read in the scheduling path: not measured: {f.read_missing or 'no samples'}"
    elif f.equal is not True:
        read = ("the BPF-side read in the scheduling path: NOT equal work (a route failed or read another "
                "value), so no ratio is quoted")
    else:
        read = (f"read from BPF in sched_switch (host, p50 with the clock pair inside, the pair alone "
                f"{stats.fmt_est(f.clock, 'not measured')}): bpf_cgroup_read_xattr() "
                f"{stats.fmt_est(f.xattr, 'not measured')}, a map lookup by cgroup id "
                f"{stats.fmt_est(f.map, 'not measured')}; the xattr read costs {_rx(f.read_x)} the map lookup "
                f"({_WORD[f.read_x.side()]})")
    write = (f"a write of the same 8 bytes from user space (C p50): setxattr costs {_rx(f.write_x)} a map update "
             f"({_WORD[f.write_x.side()]})" if f.write_x is not None else "the write: not measured")
    head = f"Knobs: {read}; {write}; {_who_part(f.who)}; Approach 1's writable file: {NOT_BUILT}."
    if f.read_x is None or f.read_missing or f.equal is not True:
        return head + " Whether xattrs are enough for a knob read in the hot path: not shown in this run."
    deleg = _delegated(f.who)
    who = {None: "", True: " (the delegated owner wrote its cgroup's xattr, inside a cgroup namespace too, where a "
                          "map needs a pin mode that lets it in)",
           False: " (but the delegated owner could not write its cgroup's xattr here)"}[deleg]
    side = f.read_x.side()
    if side == "higher":
        extra = (f"about {(f.xattr.value - f.map.value) * 1e3:.0f} ns more per read at the median"
                 if f.xattr is not None and f.map is not None else "more per read")
        return head + (f" Xattrs are enough for who may write{who}, not for the read cost: in the scheduling path "
                       f"the xattr read is the dearer, {extra}; for a knob read on every context switch a map keyed "
                       "by cgroup id is the cheaper read.")
    return head + (f" Xattrs are enough here: in the scheduling path the xattr read is {_WORD[side]} than a map "
                   f"lookup{who}.")


# --- the section -----------------------------------------------------------------------------------


def section(doc: dict[str, Any]) -> Section:
    k = doc.get("knob")
    if not isinstance(k, dict):
        return Section("Per-cgroup knobs, where they are read", text=["not measured: the knob measure did not run"])
    r, w, who = k.get("read"), k.get("write"), k.get("who")
    read_rows = []
    base = r.get("map") if stats.is_measured(r) else None
    for key, what in READ_ROUTES.items():
        e = r.get(key) if stats.is_measured(r) else r
        if not stats.is_measured(e):
            read_rows.append([what, *[_nm(e)] * 5])
            continue
        x = ratio_est(e, base) if key != "map" else None
        read_rows.append([what, _cell(e), _cell(e, 0.99),
                          stats.fmt_ratio_est(x, "map lookup") if key != "map" else "the baseline",
                          hex(e["value"]) if key != "clock" else "n/a", str(e["errors"])])
    write_rows = []
    wbase = w.get("map_update") if stats.is_measured(w) else None
    for key, what in WRITE_ROUTES.items():
        e = w.get(key) if stats.is_measured(w) else w
        if not stats.is_measured(e):
            write_rows.append([what, *[_nm(e)] * 3])
            continue
        write_rows.append([what, _cell(e), _cell(e, 0.99), "the baseline" if key == "map_update" else
                           stats.fmt_ratio_est(ratio_est(e, wbase), "map update")])
    write_rows.append(["Approach 1's writable file", *[NOT_BUILT] * 3])
    tables = [(["BPF-side read (tp_btf/sched_switch)", "p50 [95% CI] n", "p99 [95% CI] n", "p50 vs map lookup",
                "value read", "failed reads"], read_rows),
              (["write from user space (the same 8 bytes)", "C p50 [95% CI] n", "C p99 [95% CI] n",
                "C p50 vs map update"], write_rows)]
    text = ["A u64 knob per cgroup, read by a BPF program on tp_btf/sched_switch for the task switched in, two "
            "ways (equal work: both hold the same 8 bytes, and the run checks each read them). Each sample is "
            "bpf_ktime_get_ns() before and after the read alone, taken where a scheduler reads a knob (a "
            "BPF_PROG_RUN loop of N reads would time a hot cache and no task's cgroup); the clock pair's own "
            "cost is the third row, inside both. The three run in every sampled switch in a rotating order."
            + (" NOT equal work in this run: a route read another value or failed (the table's last columns)."
               if stats.is_measured(r) and not r.get("equal") else "")]
    if stats.is_measured(who):
        cols = who["columns"]
        tables.append((["who (each cell: one write tried in this run)", *cols],
                       [[s, *[cells.get(c, "not measured") for c in cols]] for s, cells in who["rows"].items()]))
        text.append(f"Delegation: {who['delegation']}. Map pin modes: "
                    + "; ".join(f"{m}: {why}" for m, why in who["modes"].items()) + ".")
    else:
        text.append(f"Who may write: {_nm(who)}.")
    return Section("Per-cgroup knobs, where they are read", text=text, tables=tables)
