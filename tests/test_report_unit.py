"""The report's pure parts: percentiles, ratios, the not-measured rows, the cell checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bpffs_sync.measure.report import guest, render, stats, verdict
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


def test_compare_names_the_winner_of_each_measured_figure() -> None:
    """Lower wins, within 10 % is a tie, an unmeasured figure is left out, v1 support counts."""
    a1 = verdict.Approach(read=10.0, hold_s=1.0, slab=500.0, cells={"cgroup v1": "no: link create on a v1 cgroup"})
    a2 = verdict.Approach(read=20.0, hold_s=1.05, slab=None, cells={"cgroup v1": "yes (named v1 hierarchy): ..."})
    got = {what: who for what, who, _ in verdict.compare(a1, a2)}
    assert got == {
        "read cost (C p50, same boot)": "a1",
        "link create time (A2's is a cgroup_mutex hold, A1's walk holds none)": "tie",
        "cgroup v1 hierarchies": "a2",
    }


def test_bzimage_version_reads_the_boot_header(tmp_path: Path) -> None:
    """The version string is found through the x86 boot header's pointer at 0x20e (+0x200)."""
    head = bytearray(0x2000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x1000).to_bytes(2, "little")
    head[0x1200 : 0x1200 + 20] = b"7.3.4+ (root@vm) #3\0"
    (tmp_path / "bzImage").write_bytes(bytes(head))
    assert guest.bzimage_version(tmp_path / "bzImage") == "7.3.4+ (root@vm) #3"
