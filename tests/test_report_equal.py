"""The equal-work parts of the report that need no kernel (issue 22, Build 1): the check that every
route of a variant produced the same output, the section rendered from fixed JSON, the text the map
route formats, and the per-syscall breakdown's parsing."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest

from bpffs_sync.measure.report import equal, measures, render, render_equal
from bpffs_sync.measure.report.mechanisms import FULL, RAW, ROUTES, format_text, value_of

pytestmark = pytest.mark.unit

TEXT = (b"cgroup_id: 42\ntotal_ns: 3000\nslices: 3\n     usecs               : count    distribution\n"
        b"         0 -> 1          : 1        |********************                    |\n"
        b"         2 -> 3          : 2        |****************************************|\n")
SHA = hashlib.sha256(TEXT).hexdigest()
OTHERS = {"cpu_stat": "usage_usec"}


def _full(**override: dict[str, equal.Produced]) -> dict[str, dict[str, equal.Produced]]:
    out: dict[str, dict[str, equal.Produced]] = {k: {"c": TEXT, "py": TEXT} for k in
                                                 ("mirror_iter", "iter_per_read", "prog_run_text", "map_text")}
    return out | override


def _raw(**override: dict[str, equal.Produced]) -> dict[str, dict[str, equal.Produced]]:
    out: dict[str, dict[str, equal.Produced]] = {k: {"c": 3000, "py": 3000} for k in
                                                 ("total_file", "iter_total_per_read", "prog_run", "map_lookup")}
    return out | override


def test_format_text_is_the_readers_text() -> None:
    """The map route's text from a raw struct hist_value: the reader's lines, rows up to the last
    non-zero slot; no entry gives the three lines with zeros, as the reader prints them."""
    raw = struct.pack("=QQ27Q", 3000, 3, 1, 2, *[0] * 25)
    assert format_text(raw, 42) == TEXT
    assert format_text(None, 7) == b"cgroup_id: 7\ntotal_ns: 0\nslices: 0\n"
    assert value_of(TEXT) == 3000 and value_of(5) == 5


def test_check_full_text_equal() -> None:
    """Every route, C and Python, the same bytes: equal, against the file's C output, the text kept."""
    got = equal.check(FULL, _full(), OTHERS)
    assert got["equal"] and got["reference"] == "mirror_iter:c" and got["differ"] == []
    assert got["bytes"] == len(TEXT) and got["sha256"] == SHA and got["text"] == TEXT.decode()
    assert got["routes"]["map_text"]["py"] == {"bytes": len(TEXT), "sha256": SHA, "same": True}
    assert got["cannot"] == {"cpu_stat": "reads another figure (usage_usec), the kernel's own: it cannot produce "
                                         "hist_oncpu's text"}


def test_check_full_text_names_the_route_that_differs() -> None:
    """One route's Python text differs at byte 11 (another cgroup id): not equal, and it says where."""
    other = TEXT.replace(b"42", b"43")
    got = equal.check(FULL, _full(map_text={"c": TEXT, "py": other}))
    assert not got["equal"]
    assert got["routes"]["map_text"]["py"]["same"] is False
    assert got["differ"] == [f"map_text:py: {len(other)} bytes, first difference at byte 12 (reference "
                             f"mirror_iter:c: {len(TEXT)} bytes)"]


def test_check_raw_value() -> None:
    """The raw variant compares numbers; a route reading another number is named with both."""
    assert equal.check(RAW, _raw())["equal"]
    got = equal.check(RAW, _raw(prog_run={"c": 3000, "py": 2999}))
    assert not got["equal"] and got["value"] == 3000
    assert got["differ"] == ["prog_run:py: 2999 (reference total_file:c: 3000)"]


def test_check_a_route_without_output_says_why() -> None:
    """A failed route, a number where a text belongs, a route not run: each in `cannot` with its
    reason, none counted as a difference; the first route with an output is the reference."""
    got = equal.check(FULL, {"mirror_iter": {"c": "failed here: ENOENT", "py": TEXT},
                             "iter_per_read": {"c": TEXT, "py": 5}, "prog_run_text": {"c": TEXT, "py": TEXT}})
    assert got["equal"] and got["reference"] == "iter_per_read:c"
    assert got["cannot"] == {"mirror_iter:c": "failed here: ENOENT",
                             "iter_per_read:py": "gave a number (5), not a text", "map_text": "not run here"}
    got = equal.check(RAW, _raw(map_lookup={"c": 3000, "py": b"3000\n"}))
    assert got["cannot"] == {"map_lookup:py": "gave 5 bytes of text, not a number"}


def test_check_with_no_output_at_all_is_not_equal() -> None:
    """No route produced an output: not equal, no reference."""
    got = equal.check(RAW, {"total_file": {"c": "failed here: x", "py": "failed here: y"}})
    assert not got["equal"] and got["reference"] is None
    assert got["cannot"] == {"total_file": "failed here: x", "iter_total_per_read": "not run here",
                             "prog_run": "not run here", "map_lookup": "not run here"}


def test_check_of_zeros_is_void() -> None:
    """Every route gave total_ns 0 (the target has no stats entry): they agree, but the check is
    void, so not equal; likewise the three zero lines of the full text."""
    got = equal.check(RAW, {k: {"c": 0, "py": 0} for k in ROUTES[RAW]})
    assert got["differ"] == [] and not got["equal"] and "total_ns 0" in got["void"]
    zeros = format_text(None, 42)
    got = equal.check(FULL, {k: {"c": zeros, "py": zeros} for k in ROUTES[FULL]})
    assert got["differ"] == [] and not got["equal"] and "total_ns 0" in got["void"]


def test_check_with_one_route_is_void() -> None:
    """Only the reference route produced an output (its C and Python agree): nothing was compared."""
    got = equal.check(RAW, {"total_file": {"c": 3000, "py": 3000}, "prog_run": {"c": "failed here: x",
                                                                                   "py": "failed here: x"}})
    assert not got["equal"] and got["void"] == "only total_file produced an output: nothing was compared"
    assert equal.check(RAW, _raw())["void"] is None


# --- the section, from fixed JSON -------------------------------------------------------------------


def _series(us: float, n: int = 200) -> dict[str, Any]:
    return measures.series(3000, [int(us * 1000) + (i % 7) for i in range(n)])


def _doc(full: dict[str, dict[str, equal.Produced]] | None = None) -> dict[str, Any]:
    speeds = {"mirror_iter": 20.0, "iter_per_read": 30.0, "prog_run_text": 10.0, "map_text": 8.0, "total_file": 9.0,
              "iter_total_per_read": 14.0, "prog_run": 1.5, "map_lookup": 1.6, "cpu_stat": 12.0}
    phases = {"mirror_iter": ("open", "read", "close"), "prog_run_text": ("bpf",)}
    doc: dict[str, Any] = {
        "mechanisms": [{"key": k, "label": k, "kind": "read", "what": "usage_usec" if k == "cpu_stat" else "x",
                        "missing": "", "variant": "" if k == "cpu_stat" else FULL if k in ROUTES[FULL]
                        else RAW} for k in speeds],
        "read": {k: {"c": _series(us), "py": _series(us * 3)} for k, us in speeds.items()},
        "equal_work": {FULL: equal.check(FULL, full or _full(), OTHERS), RAW: equal.check(RAW, _raw(), OTHERS)},
        "breakdown": {k: {p: _series(2.0) if p in used or p in ("total", "rest") else measures.series(3000, [0] * 200)
                          for p, _ in render_equal.PHASE_HEADS} for k, used in phases.items()},
    }
    return doc


def _rows(sec: render.Section, table: int = 0) -> dict[str, list[str]]:
    return {row[1]: row for row in sec.tables[table][1]}


def test_section_from_fixed_json() -> None:
    """Every route in its variant, the check's outcome per loop, the ratio to BPF_PROG_RUN of the same
    variant, the breakdown (a call a route does not make: 'no such call'), every cell filled."""
    doc = _doc()
    sec = render_equal.section(doc)
    assert render.check_cells([sec]) == []
    rows = _rows(sec)
    names = render_equal.ROUTE_NAMES
    mirror, prog = rows[names["mirror_iter"]], rows[names["prog_run_text"]]
    assert mirror[0] == FULL and mirror[2] == (f"C: {len(TEXT)} bytes, sha256 {SHA[:12]} (the reference); Python: "
                                               f"{len(TEXT)} bytes, sha256 {SHA[:12]}, the same")
    assert mirror[5].startswith("2.00x BPF_PROG_RUN [") and mirror[5].endswith("n=200/200")
    assert prog[5] == "the variant's baseline"
    assert rows[names["total_file"]][2] == "C: 3000 (the reference); Python: 3000, the same"
    assert rows[names["total_file"]][5].startswith("5.99x BPF_PROG_RUN [")  # (9000 + 3) / (1500 + 3)
    assert rows["cpu_stat"][0] == "neither (another figure)" and rows["cpu_stat"][5] == "not compared: another figure"
    split = _rows(sec, 1)
    assert split[names["prog_run_text"]][2:6] == ["no such call"] * 3 + [split[names["prog_run_text"]][5]]
    assert split[names["prog_run_text"]][5].startswith("2.00 us [")
    assert split[names["map_text"]][2] == "not measured: no per-syscall breakdown in this run"
    assert f"the log2 histogram; 6 lines, {len(TEXT)} bytes in this run)" in sec.text[0]
    assert "full text: mirror_iter (c/py), iter_per_read (c/py), prog_run_text (c/py), map_text (c/py), against " \
           f"mirror_iter:c: every route produced the same {len(TEXT)} bytes (sha256 {SHA[:12]})." in sec.text[1]


def test_section_refuses_a_ratio_without_equal_work() -> None:
    """A route whose output differed gets no ratio, and its output cell says NOT the same."""
    other = TEXT.replace(b"42", b"43")
    doc = _doc(_full(map_text={"c": other, "py": TEXT}))
    rows = _rows(render_equal.section(doc))
    cells = rows[render_equal.ROUTE_NAMES["map_text"]]
    assert cells[2].startswith("C: NOT the same: ")
    assert cells[2].endswith(f"first difference at byte 12; Python: {len(TEXT)} bytes, sha256 {SHA[:12]}, the same")
    assert cells[5] == "not equal work: the outputs differ (see the output column), no ratio"
    assert render_equal.equal_work(doc, FULL, "map_text") is False
    assert render_equal.equal_work(doc, FULL, "mirror_iter") is True


def test_section_of_a_results_json_without_the_check() -> None:
    """An older results.json: the output cells say it was not checked, and no ratio is quoted."""
    doc = _doc()
    del doc["equal_work"]
    rows = _rows(render_equal.section(doc))
    assert rows[render_equal.ROUTE_NAMES["mirror_iter"]][2] == render_equal.NO_CHECK
    assert rows[render_equal.ROUTE_NAMES["mirror_iter"]][5].startswith("no ratio: equal work not shown")
    assert render_equal.equal_work(doc, FULL, "mirror_iter") is None


def test_a_void_check_quotes_no_ratio() -> None:
    """Only the file produced a text: the check is void, not equal; no route is called equal work,
    no ratio is quoted, and the CLI's problems name why."""
    doc = _doc({"mirror_iter": {"c": TEXT, "py": TEXT}, "prog_run_text": {"c": "failed here: EPERM",
                                                                         "py": "failed here: EPERM"}})
    check = doc["equal_work"][FULL]
    assert not check["equal"] and check["void"] == "only mirror_iter produced an output: nothing was compared"
    assert render_equal.equal_work(doc, FULL, "mirror_iter") is None
    rows = _rows(render_equal.section(doc))
    assert rows[render_equal.ROUTE_NAMES["mirror_iter"]][5].startswith("no ratio: equal work not shown")
    assert render_equal.problems(doc) == [f"equal work ({FULL}): {check['void']}"]


# --- the breakdown's parsing -------------------------------------------------------------------------


def test_c_phases_parses_the_breakdown(tmp_path: Path) -> None:
    """readloop's READLOOP_PHASES lines -> a list per phase, rest = total less the syscalls."""
    fake = tmp_path / "readloop"
    fake.write_text('#!/bin/sh\n[ "$READLOOP_PHASES" = 1 ] || exit 3\nprintf "value 7\\n10 1 2 3 0\\n20 5 5 5 4\\n"\n')
    fake.chmod(0o755)
    value, cols = measures.c_phases(str(fake), ["text", "/x"], 2)
    assert value == 7
    assert cols == {"total": [10, 20], "open": [1, 5], "read": [2, 5], "close": [3, 5], "bpf": [0, 4], "rest": [4, 1]}


def test_a_failed_check_is_a_problem_of_the_run() -> None:
    """A variant whose routes differ is one of the run's problems (the CLI exits 1); a passing check
    and a results.json from before the check are not."""
    other = TEXT.replace(b"42", b"43")
    assert render_equal.problems(_doc()) == []
    assert render_equal.problems(_doc(_full(map_text={"c": other, "py": TEXT}))) == [
        f"equal work (full text): map_text:c: {len(other)} bytes, first difference at byte 12 (reference "
        f"mirror_iter:c: {len(TEXT)} bytes)"]
    doc = _doc()
    del doc["equal_work"]
    assert render_equal.problems(doc) == []
