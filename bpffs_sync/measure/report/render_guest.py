"""The guest's rows (issue 22, item 2): every mechanism measured in the same boot of the patched
image (inguest.stock), its knobs, and the cross-check of host against guest.

  one_boot()    every read mechanism of the guest boot(s) beside Approach 1's and 2's files: C and
                Python medians with 95 % intervals and n (pooled over the boots), the ratio to cpu.stat
                of the same boot(s), each boot's own median and ratio (the between-boot spread), p99
                under churn; the knobs; equal work and the netlink check as the guest found them.
  crosscheck()  for every mechanism measured on both machines: its ratio to cpu.stat on the host
                (stock kernel) and in the guest (patched kernel, TCG). Each ratio is within one
                machine; host and guest are never divided into each other's rows. Where the two
                intervals do not overlap, TCG (or the other kernel) moves that mechanism against
                cpu.stat: crosscheck_rows() (pure, unit-tested) says which way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bpffs_sync.measure.report import pool, stats
from bpffs_sync.measure.report.render import BASELINE, Section, _cell, _nm, _patched, ratio_est
from bpffs_sync.measure.report.stats import RatioEst


def stock(doc: dict[str, Any]) -> dict[str, Any]:
    """The guest's stock part (inguest.stock), or why there is none."""
    p = _patched(doc)
    if not p:
        return stats.not_measured("no patched-kernel result in this run")
    if "not_measured" in p:
        return p
    s = p.get("stock", stats.not_measured("the guest gave no stock rows (an older inguest.py)"))
    return s if isinstance(s, dict) else stats.not_measured("the guest's stock rows are not an object")


def _labels(st: dict[str, Any]) -> dict[str, str]:
    return {m["key"]: f"{m['label']} ({m['what']})" for m in st.get("mechanisms", [])}


def _c(entry: Any) -> Any:
    return entry.get("c") if stats.is_measured(entry) else entry


def per_boot_ratio(num: list[float | None] | None, den: list[float | None] | None) -> list[float | None] | None:
    """Each boot's median ratio (num / den per boot; None where either is missing)."""
    if not num or not den or len(num) != len(den):
        return None
    return [a / b if a is not None and b else None for a, b in zip(num, den, strict=True)]


def _boots_cell(doc: dict[str, Any], path: str, base_path: str) -> str:
    """'boots: 41.2 / 40.9 / 43.0 us; 2.01 / 1.98 / 2.10x cpu.stat', or why there is no spread."""
    sp = _patched(doc).get("spread")
    if not isinstance(sp, dict):
        return "one boot: no spread"
    med = pool.per_boot(sp, path)
    if not med or len(med) < 2:
        return "one boot: no spread"
    ratios = per_boot_ratio(med, pool.per_boot(sp, base_path))
    out = pool.fmt_spread(med)
    if ratios:
        out += "; " + " / ".join(f"{r:.2f}" if r is not None else "-" for r in ratios) + "x cpu.stat"
    return out


def one_boot(doc: dict[str, Any]) -> Section:
    st = stock(doc)
    title = "Every mechanism in the same guest boot (patched kernel, TCG)"
    heads = ["mechanism (figure read)", "C p50 [95% CI] n", "C p99 [95% CI] n", "Python p50 [95% CI] n",
             "C p50 vs cpu.stat, same boot [95% CI]", "each boot: C p50, and vs cpu.stat",
             "C p99 under churn [95% CI] n"]
    if not stats.is_measured(st):
        return Section(title, text=[_nm(st)])
    labels, rows = _labels(st), []
    read = st.get("read", stats.not_measured("no reads"))
    churn = st.get("churn", {})
    if not stats.is_measured(read):
        rows.append(["every read", *[_nm(read)] * (len(heads) - 1)])
        read = {}
    base = _c(read.get(BASELINE))
    for key, entry in read.items():
        name = labels.get(key, key)
        if not stats.is_measured(entry):
            rows.append([name, *[_nm(entry)] * (len(heads) - 1)])
            continue
        c = entry["c"]
        r = ratio_est(c, base) if stats.is_measured(c) else None
        ch = churn.get(key, stats.not_measured("not run under churn (mechanisms.UNDER_CHURN)")) \
            if isinstance(churn, dict) else churn
        rows.append([name, _cell(c), _cell(c, 0.99), _cell(entry.get("py")),
                     "the baseline" if key == BASELINE else stats.fmt_ratio_est(r, "cpu.stat"),
                     _boots_cell(doc, f"stock.read.{key}.c", f"stock.read.{BASELINE}.c"), _cell(ch, 0.99)])
    for key, path in (st.get("files") or {}).items():  # an approach whose link on the bed failed
        if not isinstance(path, str):
            rows.append([f"Approach {key[1]} file", *[_nm(path)] * (len(heads) - 1)])
    knob_rows = []
    knobs = st.get("knobs", stats.not_measured("no knobs"))
    if stats.is_measured(knobs):
        kbase = _c(knobs.get("map_update"))
        for key, entry in knobs.items():
            if not stats.is_measured(entry):
                knob_rows.append([labels.get(key, key), *[_nm(entry)] * 3])
                continue
            knob_rows.append([labels.get(key, key), _cell(entry["c"]), _cell(entry.get("py")),
                              "the baseline" if key == "map_update" else
                              stats.fmt_ratio_est(ratio_est(entry["c"], kbase), "map update")])
    else:
        knob_rows.append(["knobs", *[_nm(knobs)] * 3])
    p = _patched(doc)
    boots = p.get("boots", [])
    text = [f"One image, {p.get('pooled_boots', 1)} boot(s) pooled (each boot's record and seed in results.json "
            "patched.boots): in each boot the host's own code (bed, mechanisms, equal work, measures) runs every "
            "mechanism the host table has, beside Approach 1's and 2's files of the same busy cgroup, in "
            "interleaved rounds of a seeded shuffled order; the user-space mirror runs as its daemon "
            "(`bpffs-sync run --user-space` on the guest bed's bpffs). Every ratio here is within this table "
            "(the same boots); cells pool the boots' samples, 'each boot' gives each boot's own median.",
            equal_line(st), netlink_line(doc)]
    if boots:
        text.append("Boots: " + "; ".join(
            f"boot {b['boot']}: " + (f"not measured: {b['not_measured']}" if "not_measured" in b else
                                     f"seed {b.get('seed')}, {float(b.get('guest_run_s') or 0):.0f} s"
                                     + (f", left out: {b['left_out']}" if b.get("left_out") else "")
                                     + (f", INCOMPLETE: {b['incomplete']}" if b.get("incomplete") else ""))
            for b in boots))
    return Section(title, text=text, tables=[(heads, rows), (["knob (guest)", "C p50 [95% CI] n",
                                                               "Python p50 [95% CI] n", "C p50 vs map update"],
                                                              knob_rows)])


def equal_line(st: dict[str, Any]) -> str:
    eq = st.get("equal_work")
    if not stats.is_measured(eq):
        return f"Equal work in the guest: {_nm(eq)}."
    parts = []
    for variant, res in eq.items():
        if not isinstance(res, dict):
            continue
        state = "holds" if res.get("equal") else f"void: {res['void']}" if res.get("void") else \
            f"DIFFERS: {'; '.join(res.get('differ', []))}"
        parts.append(f"{variant}: {state}")
    return ("Equal work in the guest (equal.py on the guest's bed; Approach 1's and 2's files print the same "
            "program's text from their own maps, so they are not in it): " + "; ".join(parts) + ".")


def netlink_line(doc: dict[str, Any]) -> str:
    """The netlink check's finding on the host and in the guest."""
    out = []
    for where, entry in (("host", doc.get("netlink_check")), ("guest", stock(doc).get("netlink_check"))):
        if stats.is_measured(entry) and "finding" in entry:
            out.append(f"{where}: {entry['finding']}")
        else:
            out.append(f"{where}: {_nm(entry)}")
    return "Netlink's old 'value 0' (netlink_check.py, a check in this run): " + "; ".join(out) + "."


# --- host against guest ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossRow:
    key: str
    host: RatioEst | None  # C p50 / cpu.stat C p50, host
    guest: RatioEst | None  # the same in the guest
    shift: float | None  # guest ratio / host ratio (1.0: TCG moves it as much as cpu.stat)
    reading: str


def reading(host: RatioEst | None, guest: RatioEst | None) -> str:
    """Where the emulator (and the other kernel) moves a mechanism against cpu.stat: by the intervals."""
    if host is None or guest is None:
        return "not compared: " + ("host" if host is None else "guest") + " ratio not measured"
    if guest.lo > host.hi:
        return ("dearer in the guest against cpu.stat (the intervals do not overlap): the emulator or the patched "
                "kernel moves it up")
    if guest.hi < host.lo:
        return ("cheaper in the guest against cpu.stat (the intervals do not overlap): the emulator or the patched "
                "kernel moves it down")
    return "the same against cpu.stat on both (the intervals overlap)"


def crosscheck_rows(host: dict[str, Any], guest: dict[str, Any], baseline: str = BASELINE) -> list[CrossRow]:
    """For each read mechanism in both (host doc["read"], guest stock["read"]; the baseline left out):
    its C p50 ratio to the baseline on each machine, their quotient and reading()."""
    hb, gb = _c(host.get(baseline)), _c(guest.get(baseline))
    rows = []
    for key, entry in host.items():
        if key == baseline or key not in guest:
            continue
        h = ratio_est(_c(entry), hb) if stats.is_measured(entry) else None
        g = ratio_est(_c(guest[key]), gb) if stats.is_measured(guest[key]) else None
        shift = g.value / h.value if h is not None and g is not None and h.value > 0 else None
        rows.append(CrossRow(key, h, g, shift, reading(h, g)))
    return rows


def crosscheck(doc: dict[str, Any]) -> Section:
    title = "Cross-check: host ratio against guest ratio, each to cpu.stat of its own machine"
    heads = ["mechanism", "host (stock kernel): C p50 / cpu.stat [95% CI]",
             "guest (patched, TCG): C p50 / cpu.stat [95% CI]", "guest ratio / host ratio", "reading"]
    st = stock(doc)
    read = st.get("read") if stats.is_measured(st) else st
    if not stats.is_measured(read):
        return Section(title, text=[f"Not compared: the guest's reads: {_nm(read)}."])
    labels = _labels(st)
    rows = [[labels.get(r.key, r.key), stats.fmt_ratio_est(r.host, "cpu.stat"),
             stats.fmt_ratio_est(r.guest, "cpu.stat"), f"{r.shift:.2f}" if r.shift is not None else "not computed",
             r.reading] for r in crosscheck_rows(doc.get("read", {}), read)]
    return Section(title, text=[
        "The same mechanism, the same code, on the two machines: each ratio divides two reads of one machine "
        "(one run on the host, the same boots in the guest), never a host figure by a guest one. A quotient "
        "near 1 means the emulator and the other kernel move the mechanism as much as they move cpu.stat; "
        "where the intervals do not overlap, the guest's ratios of that mechanism are not the host's."],
        tables=[(heads, rows or [["none", *["no mechanism measured on both"] * 4]])])
