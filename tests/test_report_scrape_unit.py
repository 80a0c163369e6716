"""The scrape table's pure parts (report/scrape.py, scrape_iter.py, render_scrape.py): the cgroup
sets' shapes, the count check, the parsers of each route's output, the ring buffer reader, and the
table and JSON block rendered from a fixed results document."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from bpffs_sync.measure.report import measures, render, render_scrape, scrape, scrape_iter, scrape_routes

pytestmark = pytest.mark.unit


def test_quick_sets_are_100_and_1000_and_the_full_run_adds_10000() -> None:
    """--quick: 100 and 1000 flat and 1000 at depth 8; the full run adds 10 000 flat."""
    quick = [(s.shape, s.n, s.depth) for s in scrape.sets(True)]
    full = [(s.shape, s.n, s.depth) for s in scrape.sets(False)]
    assert quick == [("flat", 100, 1), ("flat", 1000, 1), ("depth", 1000, 8)]
    assert full == [*quick, ("flat", 10000, 1)]


def test_deep_paths_are_chains_of_the_depth_parents_first() -> None:
    """20 cgroups at depth 8: chains of 8, 8 and 4 levels below the root, each parent before its child."""
    paths = scrape.deep_paths("/r", 20, 8)
    levels = [p.count("/") - 1 for p in paths]
    assert len(paths) == len(set(paths)) == 20
    assert max(levels) == 8 and levels.count(1) == 3
    assert all(os.path.dirname(p) in {"/r", *paths[:i]} for i, p in enumerate(paths))


def test_flat_paths_are_siblings() -> None:
    paths = scrape.flat_paths("/r", 5)
    assert len(set(paths)) == 5 and {os.path.dirname(p) for p in paths} == {"/r"}


def test_count_check_wants_one_value_per_cgroup() -> None:
    """All ids answered (extra ids, like the iterator's root, are allowed): None; one missing: why."""
    ids = [11, 12, 13]
    assert scrape.check_count({11: 1, 12: 2, 13: 3, 10: 9}, ids) is None
    assert scrape.check_count({11: 1, 13: 3}, ids) == "count check failed: 2 of 3 cgroups answered"


def test_agreement_counts_equal_values_only() -> None:
    assert scrape.agreement({1: 5, 2: 6, 3: 7}, {1: 5, 2: 0, 3: 7}, [1, 2, 3]) == 2


def test_kv_value_parses_cpu_stat() -> None:
    text = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n"
    assert scrape_routes.kv_value(text, "usage_usec") == 1234


HIST_TEXT = """cgroup_id: 41
total_ns: 5000
slices: 2
     usecs               : count    distribution
         0 -> 1          : 2        |****************************************|
cgroup_id: 42
total_ns: 0
slices: 0
"""


def test_parse_hist_splits_the_reader_output_per_cgroup() -> None:
    """hist_oncpu's reader over two cgroups: one value each, the histogram rows skipped."""
    assert scrape_iter.split_blocks(HIST_TEXT)[1] == "cgroup_id: 42\ntotal_ns: 0\nslices: 0"
    assert scrape_iter.parse_hist(HIST_TEXT) == {41: 5000, 42: 0}


def test_parse_lines_and_records() -> None:
    assert scrape_iter.parse_lines("7 100 1\n8 0 0\n") == {7: 100, 8: 0}
    blob = scrape_iter.REC.pack(7, 100, 1) + scrape_iter.REC.pack(8, 0, 0)
    assert scrape_iter.parse_records(blob) == {7: 100, 8: 0}


def test_ring_consume_skips_discarded_records_and_moves_the_consumer() -> None:
    """A ring with a committed, a discarded and a committed record: two come back, in order, and
    the consumer position ends at the producer's."""
    page, ring = mmap.PAGESIZE, 4096
    cons = mmap.mmap(-1, page)
    data = mmap.mmap(-1, page + 2 * ring)
    recs = [(scrape_iter.REC.pack(1, 10, 1), 0), (scrape_iter.REC.pack(2, 20, 1), 1 << 30),
            (scrape_iter.REC.pack(3, 30, 1), 0)]
    pos = 0
    for body, flags in recs:
        struct.pack_into("<II", data, page + pos, len(body) | flags, 0)
        data[page + pos + 8: page + pos + 8 + len(body)] = body
        pos += (len(body) + 8 + 7) & ~7
    struct.pack_into("<Q", data, 0, pos)
    blob = scrape_iter.consume(cons, data, ring)
    assert scrape_iter.parse_records(blob) == {1: 10, 3: 30}
    assert struct.unpack_from("<Q", cons, 0)[0] == pos


def test_ring_values_are_checked_against_the_summary() -> None:
    """scrape_ring's summary and the records consumed: whole and matching, the values; a short
    summary, dropped records, or fewer records than the walk wrote: WalkCut saying which."""
    blob = scrape_iter.REC.pack(7, 100, 1) + scrape_iter.REC.pack(8, 0, 0)
    assert scrape_iter.ring_values(scrape_iter.SUMMARY.pack(2, 0), blob, "t") == {7: 100, 8: 0}
    for summary, recs, want in ((b"\0" * 8, blob, "8 bytes, not 16"),
                                (scrape_iter.SUMMARY.pack(2, 1), blob, "1 of 3 records did not fit"),
                                (scrape_iter.SUMMARY.pack(3, 0), blob, "the walk wrote 3 records")):
        with pytest.raises(scrape_iter.WalkCut, match=want):
            scrape_iter.ring_values(summary, recs, "t")


def test_reread_check_accepts_a_regular_file(tmp_path: Path) -> None:
    """A regular file reads again from offset 0 with pread: no reason given."""
    f = tmp_path / "stat"
    f.write_text("usage_usec 5\n")
    assert scrape_routes.reread_check(str(f)) is None


# --- rendering from a fixed results document ------------------------------------------------------


def _route(cpu_ms: list[float], n: int, same: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_ns": [int(v * 1e6) for v in cpu_ms], "wall_ns": [int(v * 1.1e6) for v in cpu_ms],
                           "count": n}
    if same is not None:
        out["same_as_files"] = same
    return out


HELD = {"not_measured": "pread(fd, 65536, 0) after a first read of 649 bytes returned 0 bytes (end of file)"}


def _set(shape: str, n: int, scale: float) -> dict[str, Any]:
    return {"shape": shape, "n": n, "depth": 8 if shape == "depth" else 1, "scrapes": 5, "order": [],
            "prepare_s": 1.0, "routes": {
                "cpu_stat": _route([4 * scale] * 5, n),
                "files": _route([6 * scale] * 5, n, n),
                "files_held": HELD,
                "iter_ring": _route([0.4 * scale] * 5, n, n)}}


DOC: dict[str, Any] = {"scrape": {
    "seed": 7, "scrapes": 5, "depth": 8, "baseline": "cpu_stat", "duration_s": 3.0,
    "routes": {"cpu_stat": "cpu.stat x N", "files": "N files", "files_held": "N held fds",
               "iter_ring": "one iterator, ring"},
    "sets": [_set("flat", 100, 1.0), _set("flat", 1000, 10.0), _set("depth", 1000, 12.0)]}}


def _table(sec: render.Section, i: int) -> list[list[str]]:
    return sec.tables[i][1]


def test_section_rows_time_ratio_count_and_reason() -> None:
    """One row per set and route: the median in ms with n, the ratio to cpu.stat x N of that set,
    the per-cgroup time, the count; a route that did not run shows its reason once."""
    sec = render_scrape.section(DOC)
    rows = {(r[0], r[1]): r for r in _table(sec, 0)}
    files = rows[("1000 flat", "N files")]
    assert files[2].startswith("60 ms [60, 60] n=5") and files[4].startswith("1.50x cpu.stat x N")
    assert files[5] == "60.00 us [60.00, 60.00] n=5" and files[6] == "1000 of 1000"
    assert rows[("1000 flat", "cpu.stat x N")][4] == "the baseline"
    ring = rows[("1000, chains of depth 8", "one iterator, ring")]
    assert ring[4].startswith("0.10x cpu.stat x N") and ring[6].endswith("equal to the files' value: 1000 of 1000")
    assert render_scrape.set_rows({**DOC["scrape"]["sets"][0], "routes": {
        "cpu_stat": _route([4.0] * 5, 100), "iter_ring": _route([1.0] * 5, 100, 99)}}, {})[1][4:] == [
        "no ratio: its values differ from the files' (the values column)", "10.00 us [10.00, 10.00] n=5",
        "100 of 100; equal to the files' value: 99 of 100 (DIFFERS: another figure, or a moving one)"]
    alone = render_scrape.set_rows({**DOC["scrape"]["sets"][0], "routes": {
        "cpu_stat": _route([4.0] * 5, 100), "iter_ring": {**_route([1.0] * 5, 100), "same_as_files": None}}}, {})
    assert alone[1][6] == "100 of 100; equal to the files' value: not compared (the files route gave no values)"
    assert alone[1][4].startswith("0.25x cpu.stat x N")
    held = rows[("100 flat", "N held fds")]
    assert held[2] == f"not measured: {HELD['not_measured']}" and held[3:] == [render_scrape.SEE_LEFT] * 4
    assert render.check_cells([sec]) == []
    assert sec.text[0].endswith("the binary routes (BPF_PROG_RUN, batch, ring) unpack total_ns from the raw struct.")
    assert "one after another, not interleaved" in sec.text[0]


def test_growth_table_ratios_between_sets() -> None:
    """Growth: 1000/100 flat is 10x, depth/flat 1.2x; 10 000 is absent from this run and says so."""
    rows = {r[0]: r for r in _table(render_scrape.section(DOC), 1)}
    assert rows["N files"][1].startswith("10.00x 100 flat")
    assert rows["N files"][2] == "not measured: no flat set of 10000 cgroups in this run"
    assert rows["N files"][3].startswith("1.20x 1000 flat")
    assert rows["N held fds"][1] == "not measured at 1000 (flat): why in the table above"


def test_prepared_note_names_each_set_and_the_recharged() -> None:
    doc = {**DOC["scrape"], "sets": [{**DOC["scrape"]["sets"][0], "recharged": 2}, DOC["scrape"]["sets"][2]]}
    assert render_scrape.prepared(doc) == ("Making each set (mkdir, a task run in each cgroup, the mirror's pass; "
                                           "not timed as a scrape): 100 flat: 1.0 s, 2 charged twice; 1000, chains "
                                           "of depth 8: 1.0 s. The whole table took 3 s.")


def test_fmt_ms_has_no_exponent() -> None:
    """Seconds-long scrapes print as whole milliseconds, short ones with 3 significant figures."""
    from bpffs_sync.measure.report.stats import Est

    assert render_scrape.fmt_ms(Est(1364.2, 1320.0, 1481.9, 7)) == "1364 ms [1320, 1482] n=7"
    assert render_scrape.fmt_ms(Est(0.3081, 0.232, 0.506, 5)) == "0.308 ms [0.232, 0.506] n=5"


def test_section_without_scrape_results_says_so() -> None:
    sec = render_scrape.section({})
    assert _table(sec, 0) == [["scrape", "not measured: this results.json has no scrape"]]


def test_summary_json_block() -> None:
    """results.json's scrape.summary: medians with intervals, the ratio, the count; reasons kept."""
    out = render_scrape.summary(DOC["scrape"])
    files = out["flat-1000"]["files"]
    assert files["cpu"]["p50_ms"] == pytest.approx(60.0) and files["cpu"]["n"] == 5
    assert files["cpu_x_cpu_stat"]["x"] == pytest.approx(1.5) and files["count"] == 1000
    assert out["flat-100"]["files_held"] == HELD


def test_measure_set_checks_every_scrape_and_keeps_the_reasons() -> None:
    """Fake routes over ids 1..3: a good one gets one sample per round and its count; one that
    cannot run keeps its reason; one that answers 2 of 3 fails its warm-up check; one that fails
    on its second scrape ends there with the error; the values are compared with the files'."""
    ids = [1, 2, 3]
    calls = [0]

    def flaky() -> dict[int, int]:
        calls[0] += 1
        if calls[0] > 2:
            raise OSError(5, "Input/output error")
        return {1: 10, 2: 20, 3: 30}

    rs = [scrape_routes.Route("files", "files", lambda: {1: 10, 2: 20, 3: 30}),
          scrape_routes.Route("batch", "batch", lambda: {1: 10, 2: 20, 3: 31}),
          scrape_routes.Route("files_held", "held", None, "pread: end of file"),
          scrape_routes.Route("prog_run", "prog", lambda: {1: 10, 3: 30}),
          scrape_routes.Route("iter_ring", "ring", flaky)]
    orders = measures.round_orders(["files", "batch", "prog_run", "iter_ring"], 3, 1)
    out = scrape.measure_set(rs, ids, orders)
    assert len(out["files"]["cpu_ns"]) == len(out["files"]["wall_ns"]) == 3 and out["files"]["count"] == 3
    assert out["batch"]["same_as_files"] == 2
    assert out["files_held"] == {"not_measured": "pread: end of file"}
    assert out["prog_run"] == {"not_measured": "count check failed: 2 of 3 cgroups answered"}
    assert out["iter_ring"] == {"not_measured": "[Errno 5] Input/output error"}
    no_files = scrape.measure_set([rs[1]], ids, measures.round_orders(["batch"], 2, 1))
    assert no_files["batch"]["count"] == 3 and no_files["batch"]["same_as_files"] is None
