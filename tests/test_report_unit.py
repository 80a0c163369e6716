"""The report's pure parts: percentiles, ratios, the not-measured rows, the cell checks."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from bpffs_sync.measure.report import guest, measures, mechanisms, render, stats, verdict
from bpffs_sync.measure.report.measures import patch_lines

pytestmark = pytest.mark.unit


def test_percentile_nearest_rank() -> None:
    """p50 of 1..100 is 50 and p99 is 99 (nearest rank, no interpolation)."""
    values = [float(v) for v in range(1, 101)]
    assert (stats.percentile(values, 0.5), stats.percentile(values, 0.99)) == (50.0, 99.0)


def test_summary_is_in_microseconds() -> None:
    """Samples are ns; the summary is us."""
    assert stats.summarize_ns([1000, 2000, 3000])["p50_us"] == 2.0


def test_ratio_without_a_baseline_is_none() -> None:
    """A zero or missing baseline gives no ratio (never inf or NaN)."""
    assert (stats.ratio(5.0, 0.0), stats.ratio(None, 2.0), stats.ratio(4.0, 2.0)) == (None, None, 2.0)


def test_bad_numbers_finds_nan_and_inf() -> None:
    """Every non-finite float in a results document is reported with its path."""
    assert stats.bad_numbers({"a": [1.0, math.nan], "b": {"c": math.inf}, "d": 2}) == [".a[1]", ".b.c"]


def test_check_cells_flags_empty_and_nan_cells() -> None:
    """An empty cell and a 'nan' cell are both unfilled; 'n/a: ...' and 'not measured: ...' are filled."""
    sec = render.Section(
        "t",
        tables=[(["k", "v"], [["a", ""], ["b", "nan us"], ["c", "n/a: no daemon"], ["d", "not measured: no kernel"]])],
    )
    assert render.check_cells([sec]) == ["t: a: v = ''", "t: b: v = 'nan us'"]


def test_patched_rows_say_why_when_the_guest_did_not_run() -> None:
    """No guest run: the Approach 1 entry is the runner's reason, not a number."""
    doc = {"patched": stats.not_measured("no built kernel at /x/bzImage")}
    assert render._nm(render._a1(doc)) == "not measured: no built kernel at /x/bzImage"


def test_approach2_rows_say_it_has_not_landed() -> None:
    """Without a kernel-approach2 series the Approach 2 rows name that, even after a guest run."""
    doc = {"patched": {"carries": ["a1", "a2"], "a2_file": {}}, "loc": {"a2_file": stats.not_measured("absent")}}
    assert "Approach 2 has not landed" in render._nm(render._a2(doc))


def test_approach2_rows_name_an_image_without_it() -> None:
    """A booted image whose kernel lacks Approach 2 (BTF probe) is named as the reason, not a landing."""
    doc = {
        "patched": {"carries": ["a1"], "image": {"path": "/k/bzImage", "series": "Approach 1 + Approach 2"}},
        "loc": {"a2_file": {"kernel": 640}},
    }
    assert render._nm(render._a2(doc)) == (
        "not measured: the booted kernel does not carry Approach 2 (BTF probe in "
        "the guest; image /k/bzImage, meant for Approach 1 + Approach 2)"
    )


def test_guest_boot_is_matched_to_the_recorded_image() -> None:
    """The guest's uname -r/-v must be the recorded bzImage's version string, else it is not that image."""
    ident = {"version": "7.3.4+ (root@vm) #1 SMP PREEMPT_DYNAMIC Tue Dec  1 00:24:31 UTC 2026"}
    same = {"kernel": "7.3.4+", "version": "#1 SMP PREEMPT_DYNAMIC Tue Dec  1 00:24:31 UTC 2026"}
    rebuilt = {"kernel": "7.3.4+", "version": "#2 SMP PREEMPT_DYNAMIC Tue Dec  1 00:52:10 UTC 2026"}
    assert (guest.matches(ident, same), guest.matches(ident, rebuilt)) == (True, False)


def test_patch_lines_counts_by_part(tmp_path: Path) -> None:
    """Added lines are split into kernel, tools and selftests; the cover letter is skipped."""
    (tmp_path / "0000-cover-letter.patch").write_text("+++ b/kernel/x.c\n+ignored\n")
    (tmp_path / "0001-a.patch").write_text(
        "--- a/kernel/x.c\n+++ b/kernel/x.c\n+one\n+two\n-gone\n"
        "+++ b/tools/lib/bpf/l.c\n+three\n+++ b/tools/testing/selftests/t.c\n+four\n"
    )
    assert patch_lines(tmp_path) == {"kernel": 2, "tools": 1, "selftests": 1, "removed": 1}


def test_patch_lines_of_chosen_patches(tmp_path: Path) -> None:
    """only= counts the named patches (the shared prerequisites of kernel-approach2/prereqs)."""
    (tmp_path / "0001-a.patch").write_text("+++ b/kernel/x.c\n+one\n")
    (tmp_path / "0002-b.patch").write_text("+++ b/kernel/y.c\n+two\n+three\n")
    assert patch_lines(tmp_path, ["0002"])["kernel"] == 2
    assert patch_lines(tmp_path, [])["kernel"] == 0


def test_bzimage_version_reads_the_boot_header(tmp_path: Path) -> None:
    """The version string is found through the x86 boot header's pointer at 0x20e (+0x200)."""
    head = bytearray(0x2000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x1000).to_bytes(2, "little")
    head[0x1200 : 0x1200 + 20] = b"7.3.4+ (root@vm) #3\0"
    (tmp_path / "bzImage").write_bytes(bytes(head))
    assert guest.bzimage_version(tmp_path / "bzImage") == "7.3.4+ (root@vm) #3"


# --- bootstrap intervals (issue 22, item 3) --------------------------------------------------------


def test_bootstrap_matches_naive_resampling() -> None:
    """The Beta order-statistic draw gives the interval that resampling all n values gives (within
    one rank of this 41-value sample), for the median and for p90."""
    import random

    sample = sorted(float(v * v % 97) for v in range(41))
    rng = random.Random(5)
    for q in (0.5, 0.9):
        naive = sorted(stats.percentile([rng.choice(sample) for _ in sample], q) for _ in range(4000))
        fast = sorted(stats.boot_quantile(sample, q, 6, 4000))
        for tail in (0.025, 0.5, 0.975):
            i = int(tail * 3999)
            assert abs(sample.index(naive[i]) - sample.index(fast[i])) <= 1, (q, tail, naive[i], fast[i])


def test_estimate_is_seeded_and_brackets_the_median() -> None:
    """Same samples -> the same interval; it holds the median; n is carried; ns scale to us."""
    samples = [1000 + (i * 7919) % 500 for i in range(1001)]
    e1, e2 = stats.estimate(samples, scale=1e-3), stats.estimate(samples, scale=1e-3)
    assert e1 == e2 and e1 is not None
    assert e1.lo <= e1.value <= e1.hi and e1.n == 1001 and 1.0 < e1.value < 1.5
    assert stats.estimate([]) is None


def test_ratio_interval_straddling_one_is_a_tie() -> None:
    """Two draws of one distribution tie; a 2x shift does not, and says which side is higher."""
    a = [float(100 + (i * 37) % 50) for i in range(500)]
    b = [float(100 + (i * 53) % 50) for i in range(400)]
    same, double = stats.ratio_est(b, a), stats.ratio_est([2 * v for v in b], a)
    assert same is not None and same.tie and same.side() == "tie" and (same.n_num, same.n_den) == (400, 500)
    assert double is not None and not double.tie and double.side() == "higher" and double.lo > 1.9
    half = stats.ratio_est(a, [2 * v for v in b])
    assert half is not None and half.side() == "lower"


def test_ratio_est_without_samples_is_none() -> None:
    """No samples on either side, or a zero baseline: no ratio (the renderer says why)."""
    assert stats.ratio_est([], [1.0]) is None and stats.ratio_est([1.0], [0.0, 0.0]) is None


def test_maxima_only_at_equal_n() -> None:
    """Equal n: the maxima; 516 against 13 samples: p99 of each, with an interval and both n."""
    eq = stats.worst([1.0, 2.0, 3.0], [1.0, 1.0, 6.0])
    assert eq is not None and (eq.stat, eq.a, eq.b, eq.x, eq.ci) == ("max", 3.0, 6.0, 2.0, None)
    big = [float(i) for i in range(1, 517)]
    uneq = stats.worst(big, [float(i) for i in range(1, 14)])
    assert uneq is not None and uneq.stat == "p99" and (uneq.n_a, uneq.n_b) == (516, 13)
    assert uneq.a == stats.percentile(big, 0.99) and uneq.ci is not None


def test_fmt_est_shows_interval_and_n() -> None:
    """A cell: value, [lo, hi] and n; a ratio names its baseline and both n."""
    assert stats.fmt_est(stats.Est(41.23, 40.9, 41.6, 20000)) == "41.2 us [40.9, 41.6] n=20000"
    assert stats.fmt_ratio_est(stats.RatioEst(2.014, 1.98, 2.04, 10, 12), "cpu.stat") == \
        "2.01x cpu.stat [1.98, 2.04], n=10/12"
    assert stats.fmt_est(None) == "not measured: no samples"


# --- mkdir -> readable (issue 22, Why item 4) ------------------------------------------------------


class _Clock:
    """A fake clock: each reading moves it 10 us on; pauses are free (no timed assertions)."""

    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 10_000
        return self.now


def test_first_read_times_from_mkdir_return() -> None:
    """The lag counts from t0 (mkdir returned), not from the first poll: a check that first succeeds
    at its 3rd attempt, polled from t0 + 1 ms, reports the time since t0 and 3 attempts."""
    answers = iter([False, False, True])
    clock = _Clock(1_000_000 + 1_000_000)
    took, attempts = measures.first_read(lambda: next(answers), 1_000_000, clock=clock, pause=lambda _s: None)
    assert (took, attempts) == (1_000_000 + 3 * 10_000, 3)


def test_first_read_times_out_without_raising() -> None:
    """A check that never succeeds is a timeout (None), counted, not an exception."""
    clock = _Clock(0)
    took, attempts = measures.first_read(lambda: False, 0, timeout=0.001, clock=clock, pause=lambda _s: None)
    assert took is None and attempts == 101


def test_readable_summary_one_definition() -> None:
    """Readable = the check said so; timeouts count against it; the lag is over the readable tries."""
    got = measures.readable_summary([(5_000, 1), (None, 9), (7_000, 2)], gave_up=False)
    assert (got["tries"], got["readable"], got["timeouts"], got["attempts_max"]) == (3, 2, 1, 9)
    assert got["first_try"] == 1 / 3 and got["samples_ns"] == [5_000, 7_000] and got["summary"]["n"] == 2.0
    none = measures.readable_summary([(None, 4)] * 3, gave_up=True)
    assert none["readable"] == 0 and "summary" not in none and none["gave_up"].startswith("stopped after")


def test_prog_run_found_zero_is_not_readable() -> None:
    """stat_by_id's found=0 (any unknown id gets it) is not a read of the new cgroup; found=1 is."""
    key = bytes(16)
    assert not mechanisms.prog_found(key + (0).to_bytes(4, "little") + bytes(4 + 232))
    assert mechanisms.prog_found(key + (1).to_bytes(4, "little") + bytes(4 + 232))


def test_round_orders_are_seeded_shuffles() -> None:
    """Every round holds every mechanism once; one seed gives one order; the rounds differ."""
    keys = ["a", "b", "c", "d", "e"]
    orders = measures.round_orders(keys, 6, 7)
    assert orders == measures.round_orders(keys, 6, 7) and all(sorted(o) == keys for o in orders)
    assert len({tuple(o) for o in orders}) > 1 and orders != measures.round_orders(keys, 6, 8)


def test_tree_paths_is_make_trees_shape(tmp_path: Path) -> None:
    """The cost measure's paths (harness.tree_paths) are the ones harness.make_tree makes, parents first."""
    from bpffs_sync.measure.harness import make_tree, tree_paths

    want = make_tree(str(tmp_path), 11)
    assert tree_paths(str(tmp_path), 11) == want and len(want) == 11
    assert all(os.path.isdir(p) for p in want)


def test_split_keeps_every_sample() -> None:
    """n samples split over rounds sum to n."""
    assert measures.split(20000, 3) == [6667, 6667, 6666] and sum(measures.split(7, 5)) == 7


def test_interleaved_runs_rounds_in_order_and_merges() -> None:
    """Calls follow each round's order; each mechanism's samples are concatenated over its rounds;
    a failed round makes the mechanism not measured, with that round's reason."""
    from bpffs_sync.measure.report.mechanisms import Mechanism

    mechs = [Mechanism(k, k, "read", k, None, None) for k in ("x", "y", "z")]
    calls: list[tuple[str, int]] = []

    def one(m: Mechanism, k: int) -> dict[str, Any]:
        calls.append((m.key, k))
        if m.key == "z" and len(calls) > 3:
            return stats.not_measured("failed here: boom")
        return {"c": measures.series(len(calls), [len(calls)] * k)}

    got = measures.interleaved(mechs, [["y", "x", "z"], ["z", "x", "y"]], one, 5)
    assert calls == [("y", 3), ("x", 3), ("z", 3), ("z", 2), ("x", 2), ("y", 2)]
    assert got["x"]["c"]["samples_ns"] == [2, 2, 2, 5, 5] and got["x"]["c"]["rounds"] == 2
    assert got["z"] == {"not_measured": "failed here: boom"} and list(got) == ["x", "y", "z"]


# --- verdict sentences: inputs -> the exact sentence (issue 22, item 7) ----------------------------

R = stats.RatioEst
HI, TIE, LO = R(2.0, 1.8, 2.2, 10, 12), R(1.02, 0.97, 1.08, 10, 12), R(0.5, 0.45, 0.55, 10, 12)
HI_S, TIE_S, LO_S = "2.00x [1.80, 2.20], n=10/12", "1.02x [0.97, 1.08], n=10/12", "0.50x [0.45, 0.55], n=10/12"
FULL_P = ("full text (both give the program's whole text; the same bytes, checked): the file costs {} a BPF_PROG_RUN "
          "call, {}")
RAW_P = "raw value (both give total_ns alone; the same number, checked): the file costs {} a BPF_PROG_RUN call, {}"
READS_HEAD = "Reads by programs (host, C p50), the file against BPF_PROG_RUN at equal work: "
DEARER, CHEAPER, NEITHER = "the file is the dearer read", "the file is the cheaper read", "neither is shown dearer"


@pytest.mark.parametrize(("full", "raw", "equal", "want"), [
    (HI, HI, (True, True),
     READS_HEAD + FULL_P.format(HI_S, DEARER) + "; " + RAW_P.format(HI_S, DEARER) + ". In both variants the file is "
     "the dearer read: for a program reading at a high rate, BPF_PROG_RUN is the cheaper interface at equal work."),
    (LO, LO, (True, True),
     READS_HEAD + FULL_P.format(LO_S, CHEAPER) + "; " + RAW_P.format(LO_S, CHEAPER) + ". In both variants the file is "
     "the cheaper read at equal work."),
    (TIE, TIE, (True, True),
     READS_HEAD + FULL_P.format(TIE_S, NEITHER) + "; " + RAW_P.format(TIE_S, NEITHER) + ". In both variants neither "
     "is shown dearer at equal work."),
    (TIE, HI, (True, True),
     READS_HEAD + FULL_P.format(TIE_S, NEITHER) + "; " + RAW_P.format(HI_S, DEARER) + ". The variants disagree: which "
     "interface is cheaper depends on whether the reader wants the text or the number."),
    (HI, None, (True, None),
     READS_HEAD + FULL_P.format(HI_S, DEARER) + "; raw value (both give total_ns alone; the same number not "
     "checked): not measured. In the full text variant (the only one quoted) the file is the dearer read: for a "
     "program reading at a high rate, BPF_PROG_RUN is the cheaper interface at equal work."),
    (HI, LO, (False, True),
     READS_HEAD + "full text (both give the program's whole text; NOT the same bytes): not equal work, so no ratio "
     "is quoted; " + RAW_P.format(LO_S, CHEAPER) + ". In the raw value variant (the only one quoted) the file is the "
     "cheaper read at equal work."),
    (HI, HI, (False, False),
     READS_HEAD + "full text (both give the program's whole text; NOT the same bytes): not equal work, so no ratio "
     "is quoted; raw value (both give total_ns alone; NOT the same number): not equal work, so no ratio is quoted. "
     "No variant gives an equal-work ratio in this run."),
    (HI, HI, (None, None),  # not checked: no ratio quoted, no conclusion "at equal work"
     READS_HEAD + "full text (both give the program's whole text; the same bytes not checked): equal work not "
     "shown, so no ratio is quoted; raw value (both give total_ns alone; the same number not checked): equal work "
     "not shown, so no ratio is quoted. No variant gives an equal-work ratio in this run."),
    (HI, LO, (None, True),
     READS_HEAD + "full text (both give the program's whole text; the same bytes not checked): equal work not "
     "shown, so no ratio is quoted; " + RAW_P.format(LO_S, CHEAPER) + ". In the raw value variant (the only one "
     "quoted) the file is the cheaper read at equal work."),
])
def test_reads_sentence(full: stats.RatioEst, raw: stats.RatioEst | None, equal: tuple[bool | None, bool | None],
                        want: str) -> None:
    """Each variant's ratio (the file against BPF_PROG_RUN doing the same work) and its equal-work check
    give the sentence; a variant whose outputs differed is never quoted; the intervals and n are printed."""
    assert verdict.reads_sentence(full, raw, equal) == want


def test_reads_sentence_not_measured() -> None:
    """No ratio in either variant: it says what is missing, no default."""
    assert verdict.reads_sentence(None, None) == \
        "Reads by programs: not measured: the C loop of the file or of BPF_PROG_RUN, in either variant."


RD = verdict.Readable
LAG = stats.Est(2166.0, 2046.0, 2427.0, 100)
MIRROR_LAGS = RD(100, 100, 3, LAG)
MIRROR_S = ("the user-space mirror (host): 3 of 100 at the first read, 100 of 100 within the timeout, lag p50 "
            "2166 us [2046, 2427] n=100")
GUEST = "(guest, TCG: another machine than the mirror's)."


@pytest.mark.parametrize(("mirror", "kernel", "want"), [
    (MIRROR_LAGS, {"1": None, "2": None},
     f"mkdir -> readable: {MIRROR_S}; the kernel series: not measured: no patched-kernel boot in this run, so "
     "whether they remove the lag is not shown."),
    (MIRROR_LAGS, {"1": RD(50, 50, 50), "2": RD(50, 50, 49)},
     f"mkdir -> readable: {MIRROR_S}; Approach 1: 50 of 50 at the first read, 50 of 50 within the timeout; "
     f"Approach 2: 50 of 50 at the first read... {GUEST} Only Approach 1 gave a file readable at every first read "
     "after mkdir, which the mirror did not."),
    (MIRROR_LAGS, {"1": RD(50, 50, 49), "2": None},
     f"mkdir -> readable: {MIRROR_S}; Approach 1: 49 of 50 at the first read, 50 of 50 within the timeout; "
     f"Approach 2: not measured {GUEST} No kernel series was readable at every first read after mkdir."),
    (RD(100, 100, 100), {"1": RD(50, 50, 50), "2": None},
     "mkdir -> readable: the user-space mirror (host): 100 of 100 at the first read, 100 of 100 within the "
     "timeout; Approach 1: 50 of 50 at the first read, 50 of 50 within the timeout; Approach 2: not measured "
     f"{GUEST} The mirror too was readable at every first read: no lag left for a series to remove here."),
    (None, {"1": RD(50, 50, 50), "2": RD(50, 50, 50)},
     "mkdir -> readable: the user-space mirror: not measured; Approach 1: 50 of 50 at the first read, 50 of 50 "
     "within the timeout; Approach 2: 50 of 50 at the first read, 50 of 50 within the timeout "
     f"{GUEST} Only Approach 1 and 2 gave a file readable at every first read after mkdir; the mirror's is not "
     "measured."),
])
def test_mkdir_sentence(mirror: verdict.Readable | None, kernel: dict[str, verdict.Readable | None],
                        want: str) -> None:
    """Kernel series readable at every first read vs the mirror's lag, each branch; missing inputs named."""
    got = verdict.mkdir_sentence(mirror, kernel)
    if "..." in want:  # the second approach's counts, elided in the table above
        want = want.replace("Approach 2: 50 of 50 at the first read...",
                            "Approach 2: 49 of 50 at the first read, 50 of 50 within the timeout")
    assert got == want


@pytest.mark.parametrize(("args", "want"), [
    ((stats.Est(1.62, 1.6, 1.64, 20000), stats.Est(16.2, 16.0, 16.4, 20000), [], RD(3, 0, 0), "no: `cat` fails",
      "no: EACCES"),
     "For programs: its C p50: raw value 1.62 [1.60, 1.64] n=20000, full text 16.2 us [16.0, 16.4] n=20000; no read "
     "measured is shown cheaper than its raw value; it answered for a new cgroup after 0 of 3 mkdirs (found=0 for an "
     "empty new cgroup, the answer any unknown id gets); from a shell (a ten-line BPF_PROG_RUN helper or bpftool, "
     "not cat): fails; uid 65534 with a deployment's pin mode: fails (checks above)."),
    ((stats.Est(1.62, 1.6, 1.64, 20000), None, ["map_lookup (raw value) 1.50 us [1.49, 1.51] n=20000"],
      RD(100, 100, 100), "yes: reads", "yes: reads"),
     "For programs: its C p50: raw value 1.62 [1.60, 1.64] n=20000, full text not measured; shown cheaper than its "
     "raw value: map_lookup (raw value) 1.50 us [1.49, 1.51] n=20000; it answered for a new cgroup after 100 of 100 "
     "mkdirs; from a shell (a ten-line BPF_PROG_RUN helper or bpftool, not cat): runs; uid 65534 with a "
     "deployment's pin mode: reads (checks above)."),
    ((None, None, [], None, "not measured", "not measured"),
     "For programs: its read cost: not measured; whether it answers for a new cgroup: not measured; from a shell "
     "(a ten-line BPF_PROG_RUN helper or bpftool, not cat): fails; uid 65534 with a deployment's pin mode: fails "
     "(checks above)."),
])
def test_prog_sentence(args: tuple[Any, ...], want: str) -> None:
    """BPF_PROG_RUN's fit: its cost in both variants, cheapest or not, answers at mkdir or not (found=0 is
    not an answer), the checks: args are (its raw C p50, its full-text C p50, reads shown cheaper than the
    raw one, mkdir -> readable, cat cell, uid 65534 cell)."""
    assert verdict.prog_sentence(*args[:4], cat=args[4], unpriv=args[5]) == want.replace("1.62 [", "1.62 us [")


@pytest.mark.parametrize(("rows", "want"), [
    ([("f", HI), ("cpu.stat", HI)],
     f"Under churn (host, p99 with churn / idle): rose: f {HI_S}; cpu.stat {HI_S}; not shown to change: none. "
     "cpu.stat, a plain cgroupfs file, rose too: a busy tree slows any file read here, not only these."),
    ([("f", HI), ("cpu.stat", TIE), ("p", LO), ("q", None)],
     f"Under churn (host, p99 with churn / idle): rose: f {HI_S}; not shown to change: cpu.stat {TIE_S}; lower: "
     f"p {LO_S}. Not measured: q."),
    ([("f", None)], "Under churn: not measured: no read's p99 with and without churn."),
])
def test_churn_sentence(rows: list[tuple[str, stats.RatioEst | None]], want: str) -> None:
    """Rose / unchanged / lower by the p99 ratio's interval, never by a fixed 1.5x."""
    assert verdict.churn_sentence(rows) == want


def test_tree_sentences() -> None:
    """bench_a2's medians are printed as such (no interval); a missing figure says so."""
    a = verdict.Approach(cycle_x=1.234, rounds=300, hold_s=0.25, hold_x_mkdir=3.0, stall_x=None)
    assert verdict.tree_sentence("2", a) == (
        "Approach 2: mkdir+rmdir of one cgroup under one link 1.2x no link (medians of 300 rounds, no interval); "
        "link create 250 ms (3.0x a mkdir per cgroup); a concurrent mkdir's stall: not measured.")
    b = verdict.Approach(cycle=[300] * 5, cycle_none=[100] * 5, stall=[30] * 20, stall_idle=[10] * 50)
    assert verdict.tree_sentence("1", b) == (
        "Approach 1: mkdir+rmdir of one cgroup under one link 3.00x [3.00, 3.00], n=5/5 no link; link create: not "
        "measured; a concurrent mkdir's p99 during link create 3.00x [3.00, 3.00], n=20/50 its p99 idle (a stall).")
    c = verdict.Approach(stall=[10, 20], stall_idle=[10, 10], stall_x=9.0)
    assert verdict.tree_sentence("1", c).endswith(
        "a concurrent mkdir's worst during link create 2.0x its idle worst (maxima at equal n=2).")
    assert verdict.tree_sentence("1", verdict.Approach(stall_x=9.0)).endswith(
        "a concurrent mkdir's worst during link create 9.0x its idle worst (maxima of unequal n, no interval).")
    assert verdict.mirror_tree_sentence(TIE, HI, 1000) == (
        f"User-space mirror (host): with its daemon running, mkdir+rmdir of one cgroup (n=1000 each way) costs "
        f"{TIE_S} the same without it at the median (not shown dearer or cheaper) and {HI_S} at p99 (dearer); "
        "the daemon runs beside mkdir, not in it, on the same CPUs.")
    assert verdict.mirror_tree_sentence(LO, LO, 10).endswith(
        f"costs {LO_S} the same without it at the median (cheaper) and {LO_S} at p99 (cheaper); the daemon runs "
        "beside mkdir, not in it, on the same CPUs.")
    assert verdict.mirror_tree_sentence(HI, None, 0) == \
        "User-space mirror: mkdir+rmdir with its daemon running: not measured."


def _ax(**won: str) -> list[verdict.Axis]:
    """Every WEIGHTS axis, winner from won (default 'tie'), detail 'd'."""
    return [verdict.Axis(name, won.get(name.split()[0], "tie"), "d") for name in verdict.WEIGHTS]


@pytest.mark.parametrize(("won", "want"), [
    ({"read": "a2", "kernel": "a2"},
     " Pick: Approach 2, by a margin of 4 that the open axes (0) cannot reverse."),
    ({"read": "a2", "mkdir+rmdir": "open"},
     " No clear pick: the axes without an interval or not measured weigh 3, enough to reverse Approach 2's margin "
     "of 3."),
    ({"read": "a1", "mkdir+rmdir": "a2"}, " No clear pick: the weighted wins are equal (3 each)."),
    ({}, " No clear pick: the weighted wins are equal (0 each)."),
    ({"read": "a1", "slab": "unmeasured", "cgroup": "a2"},
     " Pick: Approach 1, by a margin of 2 that the open axes (1) cannot reverse."),
])
def test_pick(won: dict[str, str], want: str) -> None:
    """Weighted wins; a tie (interval holding 1.0) counts for nobody; open axes that could reverse the
    margin give 'no clear pick' with the reason."""
    got = verdict.pick(_ax(**won))
    assert got.endswith(want) and got.startswith("Approach 1 against Approach 2 (same guest boot; weights in "
                                                 "verdict.WEIGHTS)")


def test_pick_prints_the_intervals_it_used() -> None:
    """The deciding read axis shows both medians and the A2/A1 ratio's interval; mkdir and rmdir are one axis."""
    def series(base: int) -> dict[str, Any]:
        return measures.series(1, [base + i % 7 for i in range(300)])

    a1 = verdict.Approach(read_c=series(1000), read=render.est(series(1000)), cycle_x=1.3, rounds=300, loc=1900,
                          cells={"cgroup v1": "yes"})
    a2 = verdict.Approach(read_c=series(2000), read=render.est(series(2000)), cycle_x=1.1, rounds=300, loc=1000,
                          cells={"cgroup v1": "no"})
    ax = {a.name: a for a in verdict.axes(a1, a2)}
    assert ax["read"].winner == "a1" and "A2/A1 2.00x [2.00, 2.00], n=300/300" in ax["read"].detail
    cycle = ax["mkdir+rmdir under one link"]
    assert cycle.winner == "open" and "no interval" in cycle.detail
    assert (ax["kernel lines"].winner, ax["cgroup v1 hierarchies"].winner) == ("a2", "a1")
    assert "mkdir under one link" not in ax and "rmdir under one link" not in ax
    assert verdict.pick(list(ax.values())).endswith(
        "No clear pick: the axes without an interval or not measured weigh 7, enough to reverse Approach 1's "
        "margin of 3.")


def test_weights_say_why() -> None:
    """Every axis has a positive weight and a reason."""
    assert all(w > 0 and len(why) > 20 for w, why in verdict.WEIGHTS.values())


def test_worst_cell_compares_maxima_only_at_equal_n() -> None:
    """The populate table's worst concurrent mkdir: maxima at equal n, p99 with its interval otherwise,
    and an old results.json without samples shows the maxima with their n and no ratio."""
    same = render.worst_cell({"samples_ns": [1000, 3000]}, {"samples_ns": [2000, 6000]})
    assert same == "max 3.00 us (n=2) -> 6.00 us (n=2): 2.00x (maxima at equal n, no interval)"
    idle, busy = {"samples_ns": list(range(1000, 517_000, 1000))}, {"samples_ns": list(range(1000, 14_000, 1000))}
    uneq = render.worst_cell(idle, busy)
    assert uneq.startswith("p99 511 us (n=516) -> 13.0 us (n=13): 0.03x [") and "max" not in uneq
    old = render.worst_cell({"summary": {"max_us": 3.0, "n": 516.0}}, {"summary": {"max_us": 9.0, "n": 13.0}})
    assert old == "max 3.00 us (n=516) -> 9.00 us (n=13): unequal n, not compared"


def test_guest_mkdir_cost_keeps_samples_and_interleaves(tmp_path: Path) -> None:
    """inguest._mkdir_cost (here on a plain directory, links faked): bench_a2's JSON keys, every
    sample kept per condition, the conditions in each round's shuffled order, links made per round."""
    import contextlib

    from bpffs_sync.measure.report import inguest

    made: list[tuple[str, int]] = []

    def linked(approach: str, _d: str, names: list[str]) -> contextlib.AbstractContextManager[None]:
        made.append((approach, len(names)))
        return contextlib.nullcontext()

    got = inguest._mkdir_cost(linked, str(tmp_path), 12, 3)
    assert {len(v) for c in got["samples_ns"].values() for v in c.values()} == {12}
    assert got["order"] == measures.round_orders(["none", "a1:1", "a2:1", "a1:4", "a2:4"], 5, 3)
    want_links = [(c.split(":")[0], int(c.split(":")[1])) for o in got["order"] for c in o if c != "none"]
    assert made == want_links and list(tmp_path.iterdir()) == []
    assert got["1"]["a1_mkdir_us"] > 0 and got["4"]["a2_rmdir_vs_none"] > 0 and got["rounds"] == 12


def test_guest_reads_are_interleaved_with_every_approach_linked(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """inguest.interleaved_reads (approaches and the C loop faked, files real): every approach is linked
    for the whole phase, cpu.stat and each file are read in each round's shuffled order, samples of all
    rounds merged (n_c each), the churn pass likewise, and the order recorded with its seed."""
    import contextlib
    import os

    from bpffs_sync.measure.report import inguest
    from bpffs_sync.measure.report.compiled import Tools

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "cpu.stat").write_text("usage_usec 7\n")
    events: list[str] = []

    class FakeAp:
        def __init__(self, key: str) -> None:
            self.key = key
            (busy / key).write_text("total_ns: 9\n")

        def attach(self, _d: str) -> int:
            events.append(f"attach {self.key}")
            return os.open("/dev/null", os.O_RDONLY)

        def detach_all(self) -> None:
            events.append(f"detach {self.key}")

        def file_of(self, d: str) -> str:
            return os.path.join(d, self.key)

    def c_loop(_readloop: str, args: list[str], n: int) -> tuple[int, list[int]]:
        events.append(f"read {os.path.basename(args[1])} {n}")
        return 1, [n] * n

    monkeypatch.setattr(measures, "c_loop", c_loop)
    monkeypatch.setattr(measures, "churning", lambda *_a: contextlib.nullcontext())
    plan = inguest.GuestPlan(10, 5, 1, (100,), 10, 10, 5, 1, 10)
    tools = Tools(readloop="readloop", bpf_object="x")
    got = inguest.interleaved_reads(tools, plan, [FakeAp("a1"), FakeAp("a2")], root=str(tmp_path),  # type: ignore[list-item]
                                    busy=str(busy), churn_dir=str(tmp_path / "churn"), seed=4)
    names = {"cpu_stat": "cpu.stat", "a1": "a1", "a2": "a2"}
    want_reads = [f"read {names[k]} 2" for o in got["order"]["read"] + got["order"]["churn"] for k in o]
    assert events == ["attach a1", "attach a2", *want_reads, "detach a2", "detach a1"]
    assert got["order"]["seed"] == 4 and got["order"]["read"] == measures.round_orders(["cpu_stat", "a1", "a2"], 5, 4)
    assert {len(got[k][part]["samples_ns"]) for k in names for part in ("c", "churn")} == {10}
    assert got["a1"]["py"]["value"] == 9 and got["cpu_stat"]["py"]["value"] == 7
