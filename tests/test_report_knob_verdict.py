"""The knob sentence of the verdict (issue 22, items 5 and 7): a table of inputs -> the exact sentence
(render_knob.knob_sentence), and figures() reading results.json's "knob" entry."""

from __future__ import annotations

import pytest

from bpffs_sync.measure.report import knob, render_knob, stats
from bpffs_sync.measure.report.render_knob import KnobFigures

R, E = stats.RatioEst, stats.Est
HI, TIE, LO = R(2.4, 2.3, 2.5, 4000, 4000), R(1.01, 0.98, 1.04, 4000, 4000), R(0.5, 0.45, 0.55, 4000, 4000)
W = R(3.6, 3.4, 3.8, 1000, 1000)
XA, MP, CK = E(0.29, 0.28, 0.30, 4000), E(0.12, 0.11, 0.12, 4000), E(0.04, 0.04, 0.04, 4000)
XA_S, MP_S, CK_S = "0.290 us [0.280, 0.300] n=4000", "0.120 us [0.110, 0.120] n=4000", "0.040 us [0.040, 0.040] n=4000"
OWNER, OTHER, NS = knob.SUBJECTS[1:]
COLS = ("setxattr user.* on the delegated cgroup", "map update, pin 0600 root", "map update, pin 0660 root:64222")


def who(owner_xattr: str = "yes: wrote") -> dict[str, dict[str, str]]:
    return {"root": dict.fromkeys(COLS, "yes: wrote"),
            OWNER: dict(zip(COLS, (owner_xattr, "no: Permission denied", "yes: wrote"), strict=True)),
            OTHER: dict(zip(COLS, ("no: Permission denied", "no: Permission denied", "no: Permission denied"),
                            strict=True)),
            NS: dict(zip(COLS, ("yes: wrote (its /proc/self/cgroup: 0::/)", "no: Permission denied", "yes: wrote"),
                         strict=True))}


READ = (f"read from BPF in sched_switch (host, p50 with the clock pair inside, the pair alone {CK_S}): "
        f"bpf_cgroup_read_xattr() {XA_S}, a map lookup by cgroup id {MP_S}; the xattr read costs ")
WRITE = ("a write of the same 8 bytes from user space (C p50): setxattr costs 3.60x [3.40, 3.80], n=1000/1000 a "
         "map update (dearer)")
WHO = (f"who may write (a check each): {COLS[0]}: root, {OWNER}, {NS}; {COLS[1]}: root; {COLS[2]}: root, {OWNER}, {NS}")
WHO_NO_OWNER = (f"who may write (a check each): {COLS[0]}: root, {NS}; {COLS[1]}: root; {COLS[2]}: root, {OWNER}, {NS}")
TAIL = "; Approach 1's knob file: not measured: no run measured it."
WROTE = (" (the delegated owner wrote its cgroup's xattr, inside a cgroup namespace too, where a map needs a pin "
         "mode that lets it in)")


@pytest.mark.parametrize(("f", "want"), [
    (KnobFigures(XA, MP, CK, HI, True, write_x=W, who=who()),
     f"Knobs: {READ}2.40x [2.30, 2.50], n=4000/4000 the map lookup (dearer); {WRITE}; {WHO}{TAIL} Xattrs are enough "
     f"for who may write{WROTE}, not for the read cost: in the scheduling path the xattr read is the dearer, about "
     "170 ns more per read at the median; for a knob read on every context switch a map keyed by cgroup id is the "
     "cheaper read."),
    (KnobFigures(XA, MP, CK, TIE, True, write_x=W, who=who()),
     f"Knobs: {READ}1.01x [0.98, 1.04], n=4000/4000 the map lookup (not shown dearer or cheaper); {WRITE}; {WHO}"
     f"{TAIL} Xattrs are enough here: in the scheduling path the xattr read is not shown dearer or cheaper than a "
     f"map lookup{WROTE}."),
    (KnobFigures(XA, MP, CK, LO, True, write_x=W, who=who("no: setxattr: Permission denied")),
     f"Knobs: {READ}0.50x [0.45, 0.55], n=4000/4000 the map lookup (cheaper); {WRITE}; {WHO_NO_OWNER}{TAIL} Xattrs "
     "are enough here: in the scheduling path the xattr read is cheaper than a map lookup (but the delegated owner "
     "could not write its cgroup's xattr here)."),
    (KnobFigures(XA, MP, CK, HI, False, write_x=W, who=who()),
     "Knobs: the BPF-side read in the scheduling path: NOT equal work (a route failed or read another value), so no "
     f"ratio is quoted; {WRITE}; {WHO}{TAIL} Whether xattrs are enough for a knob read in the hot path: not shown in "
     "this run."),
    (KnobFigures(read_missing="this kernel has no bpf_cgroup_read_xattr() kfunc (6.16+)"),
     "Knobs: the BPF-side read in the scheduling path: not measured: this kernel has no bpf_cgroup_read_xattr() "
     "kfunc (6.16+); the write: not measured; who may write: not measured" + TAIL + " Whether xattrs are enough for "
     "a knob read in the hot path: not shown in this run."),
])
def test_knob_sentence(f: KnobFigures, want: str) -> None:
    assert render_knob.knob_sentence(f) == want


G = "guest (patched kernel, TCG)"
FW, FM, SM, SX = R(1.8, 1.7, 1.9, 1000, 1000), R(5.2, 5.0, 5.4, 1000, 1000), TIE, LO
FILE_WHO = {knob.FILE_COLUMNS[0]: f"root, {OWNER}, {NS}", knob.FILE_COLUMNS[1]: "root"}
FILE_READ = ("its BPF-side read in sched_switch (a cgroup storage lookup of what write(2) stored) costs 1.01x [0.98, "
             "1.04], n=4000/4000 the map lookup (not shown dearer or cheaper) and 0.50x [0.45, 0.55], n=4000/4000 the "
             "xattr read (cheaper)")
FILE_WRITE = (f"Approach 1's knob file ({G}): a write(2) of the 8 bytes costs 1.80x [1.70, 1.90], n=1000/1000 setxattr "
              "(dearer) and 5.20x [5.00, 5.40], n=1000/1000 a map update (dearer)")
FILE_WHO_S = (f"who may write its file (a check each): {knob.FILE_COLUMNS[0]}: root, {OWNER}, {NS}; "
              f"{knob.FILE_COLUMNS[1]}: root")


@pytest.mark.parametrize(("f", "want"), [
    (render_knob.FileFigures(G, write_xattr=FW, write_map=FM, read_map=SM, read_xattr=SX, equal=True, who=FILE_WHO,
                             rule_ok=True),
     f"{FILE_WRITE}; {FILE_READ}; {FILE_WHO_S}, as patch 13's rule says"),
    (render_knob.FileFigures(G, write_xattr=FW, write_map=FM, read_map=SM, read_xattr=SX, equal=True, who=FILE_WHO,
                             rule_ok=False),
     f"{FILE_WRITE}; {FILE_READ}; {FILE_WHO_S}, NOT as patch 13's rule says"),
    (render_knob.FileFigures(G, write_xattr=FW, write_map=FM, equal=False),
     f"{FILE_WRITE}; its BPF-side read: NOT equal work (a route failed or read another value), so no ratio is "
     "quoted; who may write its file: not measured"),
    (render_knob.FileFigures("host", missing="not in this kernel: its BTF has no BPF_F_CGROUP_STAT_WRITE"),
     "Approach 1's knob file: not in this kernel: its BTF has no BPF_F_CGROUP_STAT_WRITE"),
    (None, "Approach 1's knob file: not measured: no run measured it"),
])
def test_file_part(f: render_knob.FileFigures | None, want: str) -> None:
    assert render_knob.file_part(f) == want


def series(samples: list[int], value: int = knob.VALUE) -> dict[str, object]:
    return {"value": value, "samples_ns": samples, "summary": stats.summarize_ns(samples), "errors": 0}


def test_figures_from_a_result() -> None:
    doc = {"knob": {"read": {"clock": series([40] * 50), "xattr": series([300] * 50), "map": series([100] * 50),
                             "equal": True},
                    "write": {"xattr_set": series([6000] * 20), "map_update": series([2000] * 20)},
                    "who": {"rows": who(), "columns": list(COLS)}}}
    f = render_knob.figures(doc)
    assert f.equal is True and f.read_missing == ""
    assert f.read_x is not None and f.read_x.value == pytest.approx(3.0)
    assert f.write_x is not None and f.write_x.value == pytest.approx(3.0)
    assert f.xattr is not None and f.xattr.value == pytest.approx(0.3) and f.who == who()


NO_FILE = knob.file_support(None)


def knob_doc(file: bool) -> dict[str, object]:
    """A knob.run document: with the file (a patched kernel) or without (its cells say why)."""
    cols = [*COLS, *knob.FILE_COLUMNS]
    rows = {s: dict(cells) for s, cells in who().items()}
    rule = {s: {c: knob.may_write_file(s, c == knob.FILE_COLUMNS[1]) for c in knob.FILE_COLUMNS} for s in rows}
    for s, cells in rows.items():
        for c in knob.FILE_COLUMNS:
            cells[c] = ("yes: wrote" if rule[s][c] else "no: open for writing: Permission denied") if file \
                else "not in this kernel"
    return {"file": "linked" if file else NO_FILE,
            "read": {"clock": series([40] * 50), "xattr": series([300] * 50), "map": series([100] * 50),
                     "storage": series([110] * 50) if file else {"not_measured": NO_FILE}, "equal": True},
            "write": {"xattr_set": series([6000] * 20), "map_update": series([2000] * 20),
                      "file_write": series([12000] * 20) if file else {"not_measured": NO_FILE}},
            "who": {"rows": rows, "columns": cols, "rule": rule, "modes": {}, "delegation": "chown'ed"}}


def test_the_file_comes_from_the_guest_and_its_ratios_from_its_own_run() -> None:
    f = render_knob.figures({"knob": knob_doc(False), "patched": {"knob": knob_doc(True)}})
    assert f.file is not None and f.file.where == "guest (patched kernel, TCG)" and f.file.missing == ""
    assert f.file.write_xattr is not None and f.file.write_xattr.value == pytest.approx(2.0)
    assert f.file.write_map is not None and f.file.write_map.value == pytest.approx(6.0)
    assert f.file.read_map is not None and f.file.read_map.value == pytest.approx(1.1)
    assert f.file.rule_ok is True and f.file.who == {knob.FILE_COLUMNS[0]: f"root, {OWNER}, {NS}",
                                                     knob.FILE_COLUMNS[1]: "root"}
    assert f.who is not None and all(not c.startswith("write(2)") for cells in f.who.values() for c in cells)


def test_a_host_without_the_file_says_not_in_this_kernel() -> None:
    f = render_knob.figures({"knob": knob_doc(False)})
    assert f.file is not None and f.file.missing == NO_FILE and NO_FILE.startswith("not in this kernel: ")
    assert render_knob.knob_sentence(f).endswith(
        f"Approach 1's knob file: {NO_FILE}. Xattrs are enough for who may write{WROTE}, not for the read cost: in "
        "the scheduling path the xattr read is the dearer, about 200 ns more per read at the median; for a knob read "
        "on every context switch a map keyed by cgroup id is the cheaper read.")


def test_section_renders_whichever_ran() -> None:
    host = render_knob.section({"knob": knob_doc(False)})
    cells = [c for _, rows in host.tables for row in rows for c in row]
    assert NO_FILE in cells and "not in this kernel" in cells
    assert "Guest (patched kernel): not measured in this run (no guest knob result)." in host.text
    both = render_knob.section({"knob": knob_doc(False), "patched": {"knob": knob_doc(True)}})
    assert len(both.tables) == 2 * len(host.tables)
    guest_write = next(rows for head, rows in both.tables if head[0].startswith("write") and "guest" in head[0])
    file_row = next(r for r in guest_write if r[0] == render_knob.WRITE_ROUTES["file_write"])
    assert file_row[3].startswith("6.00x map update") and file_row[4].startswith("2.00x setxattr")
    assert any("8 of 8 as the rule says" in t for t in both.text)


def test_figures_of_a_missing_measure_say_why() -> None:
    assert render_knob.figures({}).read_missing == "the knob measure did not run"
    f = render_knob.figures({"knob": {"read": {"not_measured": "no kfunc"}, "write": {"not_measured": "x"},
                                      "who": {"not_measured": "y"}}})
    assert (f.read_missing, f.write_x, f.who) == ("no kfunc", None, None)
