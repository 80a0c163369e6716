"""The verdict: each of the maintainer's points in the RFC thread, the number of this run that
answers it, and the recommendation. Every sentence that states a finding is a function of this
run's numbers and their bootstrap intervals (the *_sentence functions and pick(), each tested with a
table of inputs -> the exact sentence): "higher"/"lower" means an interval that excludes 1.0, a tie
one that holds it; a figure that was not measured is named ("not measured: <what>"), never assumed.

The Approach 1 vs Approach 2 pick weighs its axes by WEIGHTS (the reason for each weight is beside
it); an axis decides only through an interval that excludes 1.0 or an exact count (kernel lines,
a yes/no check); a figure without an interval leaves its axis undecided, and the pick says "no
clear pick" whenever the undecided weight could reverse the margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bpffs_sync.measure.report import render_knob, stats
from bpffs_sync.measure.report.mechanisms import FULL, RAW
from bpffs_sync.measure.report.render import (
    Section,
    _bench,
    _bench_part,
    _file,
    _gbase,
    _nm,
    est,
    ratio_est,
    readable_counts,
)
from bpffs_sync.measure.report.render_equal import equal_work
from bpffs_sync.measure.report.stats import Est, RatioEst

# The Approach 1 vs Approach 2 axes: (weight, why that weight). mkdir and rmdir are one axis (the
# cost of one cgroup's life under a link), so one slow operation cannot count twice.
WEIGHTS: dict[str, tuple[int, str]] = {
    "read": (3, "every consumer pays it on every read; read efficiency is the thread's first objection"),
    "mkdir+rmdir under one link": (3, "every cgroup's life pays it, inside cgroup_mutex, on every host "
                                      "running the series, whether anyone reads the files or not"),
    "stall of a concurrent mkdir during link create": (2, "latency other workloads feel, but only while a "
                                                          "link is being created"),
    "link create time": (1, "paid once per link, by the program that creates it"),
    "slab per file": (1, "bytes per cgroup, small next to a cgroup's own state"),
    "kernel lines": (1, "review and maintenance cost, no runtime effect"),
    "cgroup v1 hierarchies": (1, "v1 is legacy, used by a minority of deployments"),
}


def _cell(doc: dict[str, Any], key: str, col: str) -> str:
    return str(doc["usability"]["rows"].get(key, {}).get(col, "not measured"))


def _yes(cell: str) -> bool:
    return cell.startswith(("yes", "n/a: no daemon: the loader exited"))


@dataclass(frozen=True, slots=True)
class Readable:
    """mkdir -> readable of one mechanism: tries, how many were readable, how many at the first read."""

    tries: int
    readable: int
    first: int
    lag: Est | None = None  # p50 of the readable ones, us

    @classmethod
    def of(cls, e: Any) -> Readable | None:
        if not stats.is_measured(e) or not isinstance(e, dict):
            return None
        tries, readable, first = readable_counts(e)
        if tries == 0:
            return None
        return cls(tries, readable, first, est(e))


@dataclass(slots=True)
class Approach:
    """One kernel series' figures from the guest boot (None: not measured)."""

    read_c: Any = None  # the C loop's series (samples), for ratios between the approaches
    read: Est | None = None  # C p50, us
    read_x_cpu: RatioEst | None = None  # vs cpu.stat in the same boot
    churn_x: RatioEst | None = None  # p99 under churn / idle p99
    mk: Readable | None = None
    hold_s: float | None = None  # link create over the largest tree (best of bench_a2's tries)
    hold_x_mkdir: float | None = None  # per cgroup, vs one mkdir of the same boot
    stall_x: float | None = None  # worst concurrent mkdir during link create vs idle (worst of its tries)
    mkdir_x: float | None = None  # mkdir under 1 link vs none (medians)
    rmdir_x: float | None = None
    cycle_x: float | None = None  # mkdir+rmdir under 1 link vs none (medians)
    cycle: list[int] | None = None  # mkdir+rmdir ns under 1 link, per round (guest mkdir cost's samples)
    cycle_none: list[int] | None = None  # the same with no link
    stall: list[int] | None = None  # a concurrent mkdir's ns while link create ran (stall's samples)
    stall_idle: list[int] | None = None  # the same probe's ns with no link create
    rounds: int = 0  # bench_a2's mkdir rounds
    slab: float | None = None  # bytes per file
    loc: float | None = None  # kernel lines of the series
    cells: dict[str, str] | None = None  # usability cells


def _pairs(ops: dict[str, list[int]]) -> list[int]:
    """mkdir + rmdir of each round (the cost of one cgroup's life)."""
    return [m + r for m, r in zip(ops["mkdir"], ops["rmdir"], strict=True)]


def approach(doc: dict[str, Any], key: str) -> Approach:
    f, b, g = _file(doc, key), _bench(doc), _gbase(doc)
    a = Approach()
    if stats.is_measured(f):
        a.read_c = f["read"]["c"]
        a.read = est(a.read_c)
        a.read_x_cpu = ratio_est(a.read_c, g["c"]) if stats.is_measured(g) else None
        a.churn_x = ratio_est(f.get("churn"), a.read_c, 0.99)
        a.mk = Readable.of(f.get("mkdir_readable"))
        a.cells = f.get("usability")
    if stats.is_measured(b):
        lc = _bench_part(doc, "link_create")
        sizes = sorted(int(n) for n in lc) if stats.is_measured(lc) else []
        if sizes:
            row = lc[str(sizes[-1])]
            a.hold_s = row[f"{key}_s"]
            a.hold_x_mkdir = stats.ratio(row[f"{key}_us_per_cgroup"], stats.dig(b, "mkdir", "none_mkdir_us"))
        a.stall_x = stats.dig(b, "stall", f"{key}_vs_idle")
        a.mkdir_x = stats.dig(b, "mkdir", "1", f"{key}_mkdir_vs_none")
        a.rmdir_x = stats.dig(b, "mkdir", "1", f"{key}_rmdir_vs_none")
        mk, rm = stats.dig(b, "mkdir", "1", f"{key}_mkdir_us"), stats.dig(b, "mkdir", "1", f"{key}_rmdir_us")
        none = (stats.dig(b, "mkdir", "none_mkdir_us") or 0) + (stats.dig(b, "mkdir", "none_rmdir_us") or 0)
        a.cycle_x = stats.ratio(mk + rm, none) if mk is not None and rm is not None else None
        a.rounds = int(stats.dig(b, "mkdir", "rounds") or 0)
        sm = stats.dig(b, "mkdir", "samples_ns")
        if isinstance(sm, dict) and f"{key}:1" in sm and "none" in sm:
            a.cycle, a.cycle_none = (_pairs(sm[c]) for c in (f"{key}:1", "none"))
        a.stall, a.stall_idle = stats.dig(b, "stall", f"{key}_samples_ns"), stats.dig(b, "stall", "idle_samples_ns")
        a.slab = stats.dig(b, "slab_per_file", f"{key}_bytes_per_file")
    loc = doc.get("loc", {}).get(f"{key}_file")
    a.loc = loc["kernel"] if stats.is_measured(loc) else None
    return a


# --- formatting ------------------------------------------------------------------------------------


def rx(r: RatioEst) -> str:
    """'16.1x [15.9, 16.3], n=20000/20000'."""
    return f"{r.value:.2f}x [{r.lo:.2f}, {r.hi:.2f}], n={r.n_num}/{r.n_den}"


def _x(v: float | None) -> str:
    if v is None:
        return "not measured"
    return f"{v:.2f}x" if v < 1 else f"{v:.1f}x"


def _e(e: Est | None) -> str:
    return stats.fmt_est(e, "not measured")


def _ms(v: float | None) -> str:
    return f"{v * 1e3:.0f} ms" if v is not None else "not measured"


def _list(items: list[str]) -> str:
    return "; ".join(items) if items else "none"


# --- the sentences (pure; tests/test_report_unit.py has a table for each) ---------------------------


VARIANT_WHAT = {  # what both sides of a variant hand the reader, and what the check compared
    FULL: ("the program's whole text", "the same bytes"),
    RAW: ("total_ns alone", "the same number"),
}
_SIDE = {"higher": "the file is the dearer read", "lower": "the file is the cheaper read",
         "tie": "neither is shown dearer"}


def _variant_part(variant: str, r: RatioEst | None, equal: bool | None) -> str:
    gives, same = VARIANT_WHAT[variant]
    checked = {True: f"{same}, checked", False: f"NOT {same}", None: f"{same} not checked"}[equal]
    head = f"{variant} (both give {gives}; {checked})"
    if equal is False:
        return f"{head}: not equal work, so no ratio is quoted"
    if r is None:
        return f"{head}: not measured"
    if equal is None:
        return f"{head}: equal work not shown, so no ratio is quoted"
    return f"{head}: the file costs {rx(r)} a BPF_PROG_RUN call, {_SIDE[r.side()]}"


def reads_sentence(full: RatioEst | None, raw: RatioEst | None,
                   equal: tuple[bool | None, bool | None] = (True, True)) -> str:
    """The file against BPF_PROG_RUN (host, C p50) in the two declared variants of equal work: full
    text (the mirror's file against stat_text, which formats the same text in the program) and raw
    value (total_only's file printing total_ns alone against stat_by_id's struct). equal: each
    variant's equal-work check in this run (True: held; False: the outputs differed; None: not
    checked: a ratio is quoted, and concluded from, only where it held)."""
    parts = {FULL: (full, equal[0]), RAW: (raw, equal[1])}
    usable = {v: r for v, (r, eq) in parts.items() if r is not None and eq is True}
    if full is None and raw is None:
        return ("Reads by programs: not measured: the C loop of the file or of BPF_PROG_RUN, in either "
                "variant.")
    head = ("Reads by programs (host, C p50), the file against BPF_PROG_RUN at equal work: "
            + "; ".join(_variant_part(v, r, eq) for v, (r, eq) in parts.items()) + ".")
    if not usable:
        return head + " No variant gives an equal-work ratio in this run."
    where = "In both variants" if len(usable) == 2 else f"In the {next(iter(usable))} variant (the only one quoted)"
    sides = {r.side() for r in usable.values()}
    if sides == {"higher"}:
        return head + (f" {where} the file is the dearer read: for a program reading at a high rate, "
                       "BPF_PROG_RUN is the cheaper interface at equal work.")
    if sides == {"lower"}:
        return head + f" {where} the file is the cheaper read at equal work."
    if sides == {"tie"}:
        return head + f" {where} neither is shown dearer at equal work."
    return head + (" The variants disagree: which interface is cheaper depends on whether the reader wants "
                   "the text or the number.")


def _counts(r: Readable) -> str:
    return f"{r.first} of {r.tries} at the first read, {r.readable} of {r.tries} within the timeout"


def mkdir_sentence(mirror: Readable | None, kernel: dict[str, Readable | None]) -> str:
    """Is a new cgroup's figure readable when mkdir returns: the user-space mirror (host) against
    the kernel-kept files (guest)."""
    if mirror is None:
        m = "the user-space mirror: not measured"
    else:
        m = f"the user-space mirror (host): {_counts(mirror)}" + (f", lag p50 {_e(mirror.lag)}" if mirror.lag else "")
    measured = {k: r for k, r in kernel.items() if r is not None}
    if not measured:
        return (f"mkdir -> readable: {m}; the kernel series: not measured: no patched-kernel boot in this run, "
                "so whether they remove the lag is not shown.")
    ks = "; ".join(f"Approach {k}: {_counts(r)}" if r is not None else f"Approach {k}: not measured"
                   for k, r in kernel.items())
    head = f"mkdir -> readable: {m}; {ks} (guest, TCG: another machine than the mirror's)."
    always = [k for k, r in measured.items() if r.first == r.tries]
    if mirror is not None and mirror.first == mirror.tries:
        return head + " The mirror too was readable at every first read: no lag left for a series to remove here."
    if not always:
        return head + " No kernel series was readable at every first read after mkdir."
    return (head + f" Only Approach {' and '.join(always)} gave a file readable at every first read after mkdir"
            + (", which the mirror did not." if mirror is not None else "; the mirror's is not measured."))


def prog_sentence(prog: Est | None, prog_text: Est | None, cheaper: list[str], mk: Readable | None, *,
                  cat: str, unpriv: str) -> str:
    """Does a pinned BPF_PROG_RUN program fit: its cost in each variant (the raw struct, stat_by_id;
    the full text, stat_text) and any read shown cheaper than the raw one, whether it names a new
    cgroup, whether a shell and an unprivileged reader can use it (the checks' cells)."""
    both = f"{RAW} {_e(prog)}, {FULL} {_e(prog_text)}"
    if prog is None and prog_text is None:
        cost = "its read cost: not measured"
    elif prog is None:
        cost = f"its C p50: {both}"
    elif cheaper:
        cost = f"its C p50: {both}; shown cheaper than its {RAW}: {', '.join(cheaper)}"
    else:
        cost = f"its C p50: {both}; no read measured is shown cheaper than its {RAW}"
    if mk is None:
        at = "whether it answers for a new cgroup: not measured"
    elif mk.readable == mk.tries:
        at = f"it answered for a new cgroup after {mk.readable} of {mk.tries} mkdirs"
    else:
        at = (f"it answered for a new cgroup after {mk.readable} of {mk.tries} mkdirs (found=0 for an empty "
              "new cgroup, the answer any unknown id gets)")
    use = (f"from a shell (a ten-line BPF_PROG_RUN helper or bpftool, not cat): {'runs' if _yes(cat) else 'fails'}; "
           f"uid 65534 with a deployment's pin mode: {'reads' if _yes(unpriv) else 'fails'}")
    return f"For programs: {cost}; {at}; {use} (checks above)."


def churn_sentence(rows: list[tuple[str, RatioEst | None]], plain: str = "cpu.stat") -> str:
    """Read p99 under mkdir/rmdir churn against idle, per mechanism (host)."""
    measured = [(n, r) for n, r in rows if r is not None]
    if not measured:
        return "Under churn: not measured: no read's p99 with and without churn."
    rose = [f"{n} {rx(r)}" for n, r in measured if r.side() == "higher"]
    flat = [f"{n} {rx(r)}" for n, r in measured if r.side() == "tie"]
    fell = [f"{n} {rx(r)}" for n, r in measured if r.side() == "lower"]
    out = f"Under churn (host, p99 with churn / idle): rose: {_list(rose)}; not shown to change: {_list(flat)}"
    out += f"; lower: {_list(fell)}." if fell else "."
    missing = [n for n, r in rows if r is None]
    if missing:
        out += f" Not measured: {', '.join(missing)}."
    base = dict(measured).get(plain)
    if base is not None and base.side() == "higher" and any(n != plain for n, r in measured if r.side() == "higher"):
        out += f" {plain}, a plain cgroupfs file, rose too: a busy tree slows any file read here, not only these."
    return out


def _stall_part(a: Approach) -> str:
    w = stats.worst(a.stall_idle, a.stall) if a.stall and a.stall_idle else None
    if w is not None and w.ci is not None:
        return (f"a concurrent mkdir's p99 during link create {rx(w.ci)} its p99 idle "
                f"({ {'higher': 'a stall', 'lower': 'faster', 'tie': 'no stall shown'}[w.ci.side()]})")
    if w is not None and w.x is not None:
        return f"a concurrent mkdir's worst during link create {_x(w.x)} its idle worst (maxima at equal n={w.n_a})"
    if a.stall_x is not None:
        return (f"a concurrent mkdir's worst during link create {_x(a.stall_x)} its idle worst (maxima of "
                "unequal n, no interval)")
    return "a concurrent mkdir's stall: not measured"


def tree_sentence(k: str, a: Approach) -> str:
    """What one approach's files cost the cgroup tree, from bench_a2 (medians and worsts: no interval)."""
    cyc = stats.ratio_est(a.cycle, a.cycle_none) if a.cycle and a.cycle_none else None
    parts = [f"mkdir+rmdir of one cgroup under one link {rx(cyc)} no link" if cyc is not None else
             f"mkdir+rmdir of one cgroup under one link {_x(a.cycle_x)} no link (medians of {a.rounds} rounds, "
             "no interval)" if a.cycle_x is not None else "mkdir+rmdir under one link: not measured",
             f"link create {_ms(a.hold_s)}" + (f" ({_x(a.hold_x_mkdir)} a mkdir per cgroup)"
                                              if a.hold_x_mkdir is not None else "")
             if a.hold_s is not None else "link create: not measured",
             _stall_part(a)]
    return f"Approach {k}: " + "; ".join(parts) + "."


def mirror_tree_sentence(p50: RatioEst | None, p99: RatioEst | None, n: int) -> str:
    """mkdir+rmdir of one cgroup with the user-space mirror's daemon running against without (host),
    at the median and at p99 (the daemon takes CPU time beside mkdir: the tail is where it shows)."""
    if p50 is None or p99 is None:
        return "User-space mirror: mkdir+rmdir with its daemon running: not measured."
    word = {"higher": "dearer", "lower": "cheaper", "tie": "not shown dearer or cheaper"}
    return (f"User-space mirror (host): with its daemon running, mkdir+rmdir of one cgroup (n={n} each way) costs "
            f"{rx(p50)} the same without it at the median ({word[p50.side()]}) and {rx(p99)} at p99 "
            f"({word[p99.side()]}); the daemon runs beside mkdir, not in it, on the same CPUs.")


def _mirror_cycle(cost: Any) -> tuple[RatioEst | None, RatioEst | None, int]:
    if not isinstance(cost, dict) or "plain" not in cost:
        return None, None, 0
    a, b = cost["mirrored"]["cycle"], cost["plain"]["cycle"]
    return ratio_est(a, b), ratio_est(a, b, 0.99), int(cost["cgroups"])


# --- Approach 1 against Approach 2 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Axis:
    """One comparison: winner 'a1' | 'a2' | 'tie' | 'open' (measured, no interval) | 'unmeasured'."""

    name: str
    winner: str
    detail: str

    @property
    def weight(self) -> int:
        return WEIGHTS[self.name][0]


def _point_axis(name: str, v1: float | None, v2: float | None, fmt: Any, why: str) -> Axis:
    if v1 is None or v2 is None:
        return Axis(name, "unmeasured", f"A1 {fmt(v1)}, A2 {fmt(v2)}")
    return Axis(name, "open", f"A1 {fmt(v1)}, A2 {fmt(v2)}: no interval ({why})")


def _by(r: RatioEst) -> str:
    """The winner of a lower-is-better axis from the A2/A1 ratio's interval."""
    return {"lower": "a2", "higher": "a1", "tie": "tie"}[r.side()]


def axes(a1: Approach, a2: Approach) -> list[Axis]:
    """Every WEIGHTS axis, decided by an interval, an exact count, or left open."""
    out = []
    if a1.read_c is None or a2.read_c is None:
        out.append(Axis("read", "unmeasured", "C p50 in the guest: not measured"))
    else:
        r = ratio_est(a2.read_c, a1.read_c)
        if r is None:
            out.append(Axis("read", "unmeasured", "C p50 in the guest: no samples"))
        else:
            out.append(Axis("read", _by(r),
                            f"A1 {_e(a1.read)}, A2 {_e(a2.read)}, A2/A1 {rx(r)}"))
    cyc = stats.ratio_est(a2.cycle, a1.cycle) if a1.cycle and a2.cycle else None
    if cyc is not None:
        out.append(Axis("mkdir+rmdir under one link", _by(cyc),
                        f"A1 {_x(a1.cycle_x)}, A2 {_x(a2.cycle_x)} no link (medians); A2/A1 {rx(cyc)}"))
    else:
        out.append(_point_axis("mkdir+rmdir under one link", a1.cycle_x, a2.cycle_x, _x,
                               f"medians of {a1.rounds or '?'} rounds, without their samples"))
    w = stats.worst(a1.stall, a2.stall) if a1.stall and a2.stall else None
    if w is not None and w.ci is not None:
        out.append(Axis("stall of a concurrent mkdir during link create", _by(w.ci),
                        f"p99 of the probe's mkdirs during link create: A1 {w.a / 1e3:.0f} us (n={w.n_a}), "
                        f"A2 {w.b / 1e3:.0f} us (n={w.n_b}), A2/A1 {rx(w.ci)}"))
    elif w is not None:
        out.append(Axis("stall of a concurrent mkdir during link create", "open",
                        f"worst probe mkdir during link create: A1 {w.a / 1e3:.0f} us, A2 {w.b / 1e3:.0f} us "
                        f"(n={w.n_a} each): maxima, no interval"))
    else:
        out.append(_point_axis("stall of a concurrent mkdir during link create", a1.stall_x, a2.stall_x, _x,
                               "a worst of a few creates, without its samples"))
    out.append(_point_axis("link create time", a1.hold_s, a2.hold_s, _ms, "the best of bench_a2's tries"))
    out.append(_point_axis("slab per file", a1.slab, a2.slab,
                           lambda v: f"{v:.0f} B" if v is not None else "not measured", "median of 2 slab deltas"))
    if a1.loc is None or a2.loc is None:
        out.append(Axis("kernel lines", "unmeasured", "not counted"))
    else:
        out.append(Axis("kernel lines", "tie" if a1.loc == a2.loc else "a1" if a1.loc < a2.loc else "a2",
                        f"A1 {a1.loc:.0f}, A2 {a2.loc:.0f} (exact counts)"))
    if a1.cells is None or a2.cells is None:
        out.append(Axis("cgroup v1 hierarchies", "unmeasured", "the v1 check did not run"))
    else:
        y1, y2 = _yes(a1.cells.get("cgroup v1", "")), _yes(a2.cells.get("cgroup v1", ""))
        out.append(Axis("cgroup v1 hierarchies", "tie" if y1 == y2 else "a1" if y1 else "a2",
                        f"a link on a named v1 hierarchy: A1 {'yes' if y1 else 'no'}, A2 {'yes' if y2 else 'no'} "
                        "(a check)"))
    return out


def pick(ax: list[Axis]) -> str:
    """The weighted pick between the approaches, the axes and intervals it used, or why there is none."""
    def names(who: str) -> list[str]:
        return [f"{a.name} (weight {a.weight}: {a.detail})" for a in ax if a.winner == who]

    w1 = sum(a.weight for a in ax if a.winner == "a1")
    w2 = sum(a.weight for a in ax if a.winner == "a2")
    open_w = sum(a.weight for a in ax if a.winner in ("open", "unmeasured"))
    out = (f"Approach 1 against Approach 2 (same guest boot; weights in verdict.WEIGHTS): Approach 1 wins "
           f"{_list(names('a1'))}; Approach 2 wins {_list(names('a2'))}; ties (interval holds 1.0 or equal) "
           f"{_list(names('tie'))}; open {_list(names('open'))}; not measured "
           f"{_list([f'{a.name} (weight {a.weight})' for a in ax if a.winner == 'unmeasured'])}. "
           f"Weighted wins: Approach 1 {w1}, Approach 2 {w2}; open or not measured: {open_w}.")
    if w1 == w2:
        return out + f" No clear pick: the weighted wins are equal ({w1} each)."
    margin, lead = abs(w1 - w2), "1" if w1 > w2 else "2"
    if open_w >= margin:
        return out + (f" No clear pick: the axes without an interval or not measured weigh {open_w}, enough to "
                      f"reverse Approach {lead}'s margin of {margin}.")
    return out + f" Pick: Approach {lead}, by a margin of {margin} that the open axes ({open_w}) cannot reverse."


# --- the section -----------------------------------------------------------------------------------


def _c_entry(doc: dict[str, Any], key: str, table: str = "read", col: str = "c") -> Any:
    e = doc[table].get(key)
    return e.get(col) if stats.is_measured(e) else e


def recommendation(findings: list[str], a1: Approach, a2: Approach) -> list[str]:
    """The findings' sentences (reads, knobs, mkdir -> readable: the table's, made once by verdict()),
    then the Approach 1 vs Approach 2 pick."""
    out = list(findings)
    ax = axes(a1, a2)
    if next(a for a in ax if a.name == "read").winner == "unmeasured":
        loc = next(a for a in ax if a.name == "kernel lines")
        out.append("Approach 1 against Approach 2: not measured: their read cost in the guest boot carrying both "
                   "series, so no pick" + (f"; only their size is known: {loc.detail}." if loc.winner != "unmeasured"
                                           else "."))
    else:
        out.append(pick(ax))
    return out


def _cheaper_than(doc: dict[str, Any], key: str) -> list[str]:
    """Read mechanisms whose C p50 interval lies wholly below key's (host), each with its variant."""
    mine = est(_c_entry(doc, key))
    if mine is None:
        return []
    variant = {m["key"]: m.get("variant") or "another figure" for m in doc.get("mechanisms", [])}
    out = []
    for other in doc["read"]:
        e = est(_c_entry(doc, other)) if other != key else None
        if e is not None and e.hi < mine.lo:
            out.append(f"{other} ({variant.get(other, 'variant not recorded')}) {_e(e)}")
    return out


def _both_equal(doc: dict[str, Any], variant: str, *keys: str) -> bool | None:
    """The run's equal-work check for these routes of a variant: False when any differed, None when
    any was not checked, else True."""
    got = [equal_work(doc, variant, k) for k in keys]
    return False if False in got else None if None in got else True


def one_boot_files(doc: dict[str, Any]) -> list[tuple[str, RatioEst | None]] | None:
    """The user-space mirror's file and Approach 1's and 2's, C p50 against cpu.stat of the same guest
    boots (render_guest's stock part), or None when the guest did not read them."""
    from bpffs_sync.measure.report.render_guest import stock

    st = stock(doc)
    read = st.get("read") if stats.is_measured(st) else None
    if not stats.is_measured(read):
        return None
    base = stats.dig(read, "cpu_stat", "c")
    names = {"mirror_iter": "the user-space mirror's file", "a1_file": "Approach 1's", "a2_file": "Approach 2's"}
    return [(n, ratio_est(stats.dig(read, k, "c"), base) if stats.is_measured(read.get(k)) else None)
            for k, n in names.items()]


def verdict(doc: dict[str, Any]) -> Section:
    a1, a2 = approach(doc, "a1"), approach(doc, "a2")
    mirror, prog, cpu = (_c_entry(doc, k) for k in ("mirror_iter", "prog_run", "cpu_stat"))
    prog_text, total_file = (_c_entry(doc, k) for k in ("prog_run_text", "total_file"))
    file_x_cpu = ratio_est(mirror, cpu)
    checked = (_both_equal(doc, FULL, "mirror_iter", "prog_run_text"), _both_equal(doc, RAW, "total_file", "prog_run"))
    kernel_x = "Kernel-kept files / cpu.stat in the same guest boot: " + ", ".join(
        f"Approach {k[1]} {rx(a.read_x_cpu) if a.read_x_cpu else 'not measured'}" for k, a in (("a1", a1), ("a2", a2)))
    one = one_boot_files(doc)
    if one is not None:  # every file of one machine against its cpu.stat: the same guest boots
        kernel_x = ("The files against cpu.stat in the same guest boots (one machine, the user-space mirror's as "
                    "its daemon serves it): " + ", ".join(f"{n} {rx(r) if r else 'not measured'}" for n, r in one))
    prog_cells = [_cell(doc, "prog_run", c) for c in ("cat / grep", "unprivileged (uid 65534)", "after rmdir")]
    mk_mirror = Readable.of(doc["mkdir_readable"].get("mirror_iter"))
    names = {"mirror_iter": "the mirror's file", "iter_per_read": "a per-read iterator", "prog_run": "BPF_PROG_RUN",
             "cpu_stat": "cpu.stat"}
    churn = [(n, ratio_est(doc["churn"].get(k), _c_entry(doc, k), 0.99)) for k, n in names.items()]
    g = _gbase(doc)
    g_churn = ratio_est(g.get("churn"), g.get("c"), 0.99) if stats.is_measured(g) else None
    lc = _bench_part(doc, "link_create")
    n_big = max((int(n) for n in lc), default=0) if stats.is_measured(lc) else 0
    kf = render_knob.figures(doc)
    kx = ", ".join(f"Approach {k} {rx(a.churn_x) if a.churn_x else 'not measured'}" for k, a in (("1", a1), ("2", a2)))
    reads = reads_sentence(ratio_est(mirror, prog_text), ratio_est(total_file, prog), checked)
    knobs = render_knob.knob_sentence(kf)
    mkdir = mkdir_sentence(mk_mirror, {"1": a1.mk, "2": a2.mk})
    rows = [
        ["\"a different and not-particularly-efficient way to communicate with BPF progs\" (Tejun)",
         f"C p50 (host), {FULL}: the mirror's file {_e(est(mirror))}, BPF_PROG_RUN of stat_text "
         f"{_e(est(prog_text))}; {RAW}: total_only's file {_e(est(total_file))}, BPF_PROG_RUN of stat_by_id "
         f"{_e(est(prog))}; cgroupfs cpu.stat {_e(est(cpu))} (another figure); the mirror's file / cpu.stat "
         f"{rx(file_x_cpu) if file_x_cpu else 'not measured'} (host). {kernel_x}.",
         reads],
        ["\"Wouldn't pinned BPF_PROG_RUN program fit the bill?\" (Tejun)",
         f"cat: {prog_cells[0]}; uid 65534: {prog_cells[1]}; after rmdir: {prog_cells[2]}.",
         prog_sentence(est(prog), est(prog_text), _cheaper_than(doc, "prog_run"),
                       Readable.of(doc["mkdir_readable"].get("prog_run")), cat=prog_cells[0], unpriv=prog_cells[1])],
        ["\"AFAICS, this is the only actual benefit, right? Having text files as interface.\" (Tejun), "
         "\"there will always be a latency between cgroups getting created and userspace going to pin\" (Josh)",
         "the mkdir -> readable table below, one definition of readable for every row.",
         mkdir],
        ["\"for cgroup level low-freq hinting, being able to read xattrs on cgroupfs should be enough\" (Tejun)",
         f"host, BPF-side read p50 in sched_switch: bpf_cgroup_read_xattr() {_e(kf.xattr)}, map lookup "
         f"{_e(kf.map)}, the clock pair alone {_e(kf.clock)}; setxattr / map update (C p50) "
         f"{rx(kf.write_x) if kf.write_x else 'not measured'}; uid 65534 get: "
         f"{_cell(doc, 'xattr', 'unprivileged (uid 65534)')}; v1: {_cell(doc, 'xattr', 'cgroup v1')}.",
         knobs],
        ["\"Anything high-volume/freq ... cgroupfs file interface is far from ideal\" (Tejun)",
         f"guest, p99 with churn / idle: {kx}, cpu.stat {rx(g_churn) if g_churn else 'not measured'}.",
         churn_sentence(churn)],
        ["what the file costs the cgroup tree (the RFC walks it \"with cgroup_mutex in hand\")",
         f"bench_a2 in the guest boot, link create over {n_big + 1 if n_big else 'N'} cgroups (Approach 2 holds "
         "cgroup_mutex through it, Approach 1 walks under RCU and a mutex of its own)"
         + ("" if stats.is_measured(lc) else f": {_nm(lc)}") + ".",
         " ".join([tree_sentence("1", a1), tree_sentence("2", a2),
                   mirror_tree_sentence(*_mirror_cycle(doc.get("mkdir_cost")))])],
    ]
    return Section("Verdict: the maintainer's points", text=recommendation([reads, knobs, mkdir], a1, a2),
                   tables=[(["point (RFC thread)", "number from this run", "reading"], rows)])

