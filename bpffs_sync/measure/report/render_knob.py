"""The knob section and the verdict's knob sentence (issue 22, items 5 and 7), from results.json's
"knob" (knob.py on the host) and the guest's (patched.knob: the same measure in the patched
boot, where Approach 1's knob file exists): the BPF-side read in sched_switch, the user-space write,
and who may write, for the xattr, the map and the bpffs knob file. Each machine's rows and ratios
are its own (host and guest never divide into each other). The sentence is a pure function of
KnobFigures (tests/test_report_knob_verdict.py has its table of inputs -> sentence); a figure that
was not measured is named, never assumed, and a kernel without the file says "not in this kernel".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.render import Section, _cell, _nm, est, ratio_est
from bpffs_sync.measure.report.stats import Est, RatioEst

_WORD = {"higher": "dearer", "lower": "cheaper", "tie": "not shown dearer or cheaper"}
READ_ROUTES = {"xattr": "bpf_cgroup_read_xattr() of the cgroup's user.* xattr",
               "map": "map lookup by cgroup id (cgrp->kn->id, struct cg_key), the u64 copied out",
               "storage": "bpffs knob file (Approach 1 writes): bpf_cgrp_storage_get() of what its write(2) stored",
               "clock": "the clock pair alone (bpf_ktime_get_ns twice, nothing between): inside every row"}
WRITE_ROUTES = {"xattr_set": "setxattr(2) of the 8 bytes on the cgroup directory",
                "map_update": "bpf_map_update_elem through the map's bpffs pin",
                "file_write": "bpffs knob file (Approach 1 writes): write(2) of the 8 bytes, fd held open"}
NOT_RUN = "not measured: no run measured it"  # the file's part when neither machine has a knob result


def _why(entry: Any) -> str:
    """A cell's reason: "not in this kernel: ..." as it is, anything else as "not measured: ..."."""
    reason = entry.get("not_measured", "") if isinstance(entry, dict) else ""
    return reason if reason.startswith("not in this kernel") else _nm(entry)


def _whys(entry: Any, k: int) -> list[str]:
    """A row of k cells that have no figure: the reason in full once, then its short form."""
    why = _why(entry)
    return [why, *[why.split(":", 1)[0]] * (k - 1)]


def _up(where: str) -> str:
    return where[:1].upper() + where[1:]


def guest_knob(doc: dict[str, Any]) -> Any:
    """The guest boot's knob result (inguest.guest_main's "knob" part), None when the run has none."""
    return stats.dig(doc, "patched", "knob")


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
    file: FileFigures | None = None  # Approach 1's knob file, from the machine that has it


@dataclass(frozen=True, slots=True)
class FileFigures:
    """Approach 1's knob file, all from one machine (`where`): its ratios are within that run."""

    where: str  # "guest (patched kernel, TCG)" | "host"
    missing: str = ""  # why there are no figures ("not in this kernel: ...", "not measured: ...")
    write_xattr: RatioEst | None = None  # file write(2) / setxattr
    write_map: RatioEst | None = None  # file write(2) / map update
    read_map: RatioEst | None = None  # storage lookup / map lookup (sched_switch)
    read_xattr: RatioEst | None = None  # storage lookup / xattr read
    equal: bool | None = None  # every read route read the 8 bytes written, the file's through write(2)
    who: dict[str, str] | None = None  # FILE_COLUMNS -> who wrote (comma list)
    rule_ok: bool | None = None  # every file cell is what patch 13's rule says


def file_figures(k: Any, where: str) -> FileFigures:
    """The file's figures from one knob result (knob.run's document), or why there are none."""
    if not isinstance(k, dict) or not stats.is_measured(k):
        return FileFigures(where, missing=_why(k) if isinstance(k, dict) else "not measured: no knob result")
    r, w, who = k.get("read"), k.get("write"), k.get("who")
    if not stats.is_measured(w):
        return FileFigures(where, missing=_why(w))
    fw = w.get("file_write")
    if not stats.is_measured(fw):
        return FileFigures(where, missing=_why(fw))
    r = r if stats.is_measured(r) else {}
    st = r.get("storage")
    cols = [c for c in (who.get("columns", []) if stats.is_measured(who) else []) if c.startswith("write(2)")]
    rows, rule = (who.get("rows", {}), who.get("rule", {})) if stats.is_measured(who) else ({}, {})
    ok = [rows[s][c].startswith("yes") == bool(rule[s][c]) for s in rows for c in cols
          if c in rule.get(s, {}) and not rows[s][c].startswith("not measured")]
    return FileFigures(
        where, write_xattr=ratio_est(fw, w.get("xattr_set")), write_map=ratio_est(fw, w.get("map_update")),
        read_map=ratio_est(st, r.get("map")) if stats.is_measured(st) else None,
        read_xattr=ratio_est(st, r.get("xattr")) if stats.is_measured(st) else None,
        equal=bool(r.get("equal")) if r else None,
        who={c: ", ".join(s for s in rows if rows[s][c].startswith("yes")) or "nobody" for c in cols} or None,
        rule_ok=all(ok) if ok else None)


def pick_file(doc: dict[str, Any]) -> FileFigures:
    """The file's figures from the guest's knob result when it has them, else the host's, else the
    guest's reason (the patched kernel's is the one that matters), else the host's."""
    g, h = guest_knob(doc), doc.get("knob")
    cands = [file_figures(g, "guest (patched kernel, TCG)")] if g is not None else []
    cands += [file_figures(h, "host")] if h is not None else []
    if not cands:
        return FileFigures("", missing=NOT_RUN)
    return next((c for c in cands if not c.missing), cands[0])


def _stock_who(who: Any) -> dict[str, dict[str, str]] | None:
    """The who-may-write rows without the file's columns (the file has its own part)."""
    if not stats.is_measured(who):
        return None
    return {s: {c: v for c, v in cells.items() if not c.startswith("write(2)")} for s, cells in who["rows"].items()}


def figures(doc: dict[str, Any]) -> KnobFigures:
    k = doc.get("knob")
    file = pick_file(doc)
    if not isinstance(k, dict):
        return KnobFigures(read_missing="the knob measure did not run", file=file)
    r, w, who = k.get("read"), k.get("write"), k.get("who")
    if not stats.is_measured(r):
        return KnobFigures(read_missing=_nm(r).removeprefix("not measured: "),
                           write_x=ratio_est(w.get("xattr_set"), w.get("map_update")) if stats.is_measured(w)
                           else None, who=_stock_who(who), file=file)
    xattr, mp = r.get("xattr"), r.get("map")
    return KnobFigures(
        xattr=est(xattr), map=est(mp), clock=est(r.get("clock")), read_x=ratio_est(xattr, mp),
        equal=bool(r.get("equal")),
        write_x=ratio_est(w.get("xattr_set"), w.get("map_update")) if stats.is_measured(w) else None,
        who=_stock_who(who), file=file)


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


def _rx_or(r: RatioEst | None, what: str) -> str:
    return f"{_rx(r)} {what} ({_WORD[r.side()]})" if r is not None else f"no ratio to {what}: not measured"


def file_part(f: FileFigures | None) -> str:
    """The knob sentence's part on Approach 1's knob file."""
    if f is None:
        return f"Approach 1's knob file: {NOT_RUN}"
    if f.missing:
        return f"Approach 1's knob file: {f.missing}"
    read = ("its BPF-side read: NOT equal work (a route failed or read another value), so no ratio is quoted"
            if f.equal is not True else
            f"its BPF-side read in sched_switch (a cgroup storage lookup of what write(2) stored) costs "
            f"{_rx_or(f.read_map, 'the map lookup')} and {_rx_or(f.read_xattr, 'the xattr read')}")
    who = ("who may write its file (a check each): " + "; ".join(f"{c}: {w}" for c, w in f.who.items())
           + {True: ", as patch 13's rule says", False: ", NOT as patch 13's rule says", None: ""}[f.rule_ok]
           if f.who else "who may write its file: not measured")
    return (f"Approach 1's knob file ({f.where}): a write(2) of the 8 bytes costs {_rx_or(f.write_xattr, 'setxattr')}"
            f" and {_rx_or(f.write_map, 'a map update')}; {read}; {who}")


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
    head = f"Knobs: {read}; {write}; {_who_part(f.who)}; {file_part(f.file)}."
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


def _ratio(e: Any, base: Any, name: str) -> str:
    return stats.fmt_ratio_est(ratio_est(e, base), name) if stats.is_measured(base) else f"no ratio: {_why(base)}"


def _tables(k: dict[str, Any], where: str) -> tuple[list[str], list[Any]]:
    """One machine's knob result (knob.run's document) as its text and tables; its ratios are its own."""
    r, w, who = k.get("read"), k.get("write"), k.get("who")
    read_rows = []
    base = r.get("map") if stats.is_measured(r) else None
    xbase = r.get("xattr") if stats.is_measured(r) else None
    for key, what in READ_ROUTES.items():
        e = r.get(key) if stats.is_measured(r) else r
        if not stats.is_measured(e):
            read_rows.append([what, *_whys(e, 6)])
            continue
        read_rows.append([what, _cell(e), _cell(e, 0.99),
                          _ratio(e, base, "map lookup") if key != "map" else "the baseline",
                          "the baseline" if key == "xattr" else
                          "n/a" if key == "clock" else _ratio(e, xbase, "xattr read"),
                          hex(e["value"]) if key != "clock" else "n/a", str(e["errors"])])
    write_rows = []
    wbase = w.get("map_update") if stats.is_measured(w) else None
    xwbase = w.get("xattr_set") if stats.is_measured(w) else None
    for key, what in WRITE_ROUTES.items():
        e = w.get(key) if stats.is_measured(w) else w
        if not stats.is_measured(e):
            write_rows.append([what, *_whys(e, 4)])
            continue
        write_rows.append([what, _cell(e), _cell(e, 0.99),
                           "the baseline" if key == "map_update" else _ratio(e, wbase, "map update"),
                           "the baseline" if key == "xattr_set" else _ratio(e, xwbase, "setxattr")])
    tables: list[Any] = [
        ([f"BPF-side read (tp_btf/sched_switch), {where}", "p50 [95% CI] n", "p99 [95% CI] n", "p50 vs map lookup",
          "p50 vs xattr read", "value read", "failed reads"], read_rows),
        ([f"write from user space (the same 8 bytes), {where}", "C p50 [95% CI] n", "C p99 [95% CI] n",
          "C p50 vs map update", "C p50 vs setxattr"], write_rows)]
    text = [f"{_up(where)}: the knob file: {k.get('file', 'not measured: an older result (no file part)')}."
            + (" NOT equal work in this run: a route read another value or failed (the table's last columns)."
               if stats.is_measured(r) and not r.get("equal") else "")]
    if stats.is_measured(who):
        cols = who["columns"]
        rule = who.get("rule", {})
        tables.append(([f"who, {where} (each cell: one write tried in this run)", *cols],
                       [[s, *[cells.get(c, "not measured") for c in cols]] for s, cells in who["rows"].items()]))
        checked = [(s, c) for s in who["rows"] for c in rule.get(s, {})
                   if not who["rows"][s][c].startswith(("not in this kernel", "not measured"))]
        off = [f"{s} / {c}" for s, c in checked if who["rows"][s][c].startswith("yes") != bool(rule[s][c])]
        if checked:
            text.append(f"The knob file's cells against patch 13's rule (the owner of the cgroupfs directory of the "
                        f"cgroup's parent, or CAP_SYS_ADMIN): {len(checked) - len(off)} of {len(checked)} as the rule "
                        "says" + (f"; not as it says: {'; '.join(off)}" if off else "") + ".")
    else:
        text.append(f"Who may write ({where}): {_nm(who)}.")
    return text, tables


def section(doc: dict[str, Any]) -> Section:
    title = "Per-cgroup knobs, where they are read"
    k, g = doc.get("knob"), guest_knob(doc)
    text = ["A u64 knob per cgroup, read by a BPF program on tp_btf/sched_switch for the task switched in, "
            "three ways (equal work: each holds the same 8 bytes, and the run checks each read them): a cgroupfs "
            "user.* xattr, a map keyed by cgroup id, and Approach 1's bpffs knob file (a BPF_F_CGROUP_STAT_WRITE "
            "link, kernel-approach1 patch 13: each write(2) runs its program, which keeps the value in cgroup "
            "storage; the file's value is written through the file). Each sample is bpf_ktime_get_ns() before and "
            "after the read alone, taken where a scheduler reads a knob (a BPF_PROG_RUN loop of N reads would time "
            "a hot cache and no task's cgroup); the clock pair's own cost is the last row, inside every other. The "
            "routes run in every sampled switch in a rotating order; the writes run in interleaved rounds of a "
            "seeded order. Each machine's ratios are within its own run: the host's stock kernel has no knob file, "
            "the guest boots the patched kernel (TCG, so read its ratios, not its microseconds)."]
    tables: list[Any] = []
    parts = [(k, "host")] if isinstance(k, dict) else []
    parts += [(g, "guest (patched kernel, TCG)")] if isinstance(g, dict) else []
    if not parts:
        return Section(title, text=["not measured: the knob measure did not run"])
    for one, where in parts:
        if not stats.is_measured(one):
            text.append(f"{_up(where)}: {_nm(one)}.")
            continue
        t, tb = _tables(one, where)
        text += t
        tables += tb
    if not isinstance(g, dict):
        text.append("Guest (patched kernel): not measured in this run (no guest knob result).")
    modes = next((o["who"]["modes"] for o, _ in parts if stats.is_measured(o) and stats.is_measured(o.get("who"))),
                 None)
    delegation = next((o["who"]["delegation"] for o, _ in parts if stats.is_measured(o)
                       and stats.is_measured(o.get("who"))), None)
    if modes is not None:
        text.append(f"Delegation: {delegation}. Map pin modes: " + "; ".join(f"{m}: {why}" for m, why in modes.items())
                    + ".")
    return Section(title, text=text, tables=tables)
