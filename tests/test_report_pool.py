"""Unit tests of the report's pooling of guest boots (pool.py) and the netlink check's sentence."""

from __future__ import annotations

from typing import Any

import pytest

from bpffs_sync.measure.report import netlink_check, pool, stats


def _series(samples: list[int]) -> dict[str, object]:
    return {"value": 7, "summary": stats.summarize_ns(samples), "samples_ns": samples}


def test_pool_concatenates_samples_and_recomputes_the_summary() -> None:
    a, b, c = [1000, 3000], [5000], [7000, 9000, 11000]
    got = pool.pool([{"read": {"c": _series(a)}}, {"read": {"c": _series(b)}}, {"read": {"c": _series(c)}}])
    assert got["read"]["c"]["samples_ns"] == a + b + c
    assert got["read"]["c"]["summary"]["n"] == 6
    assert got["read"]["c"]["summary"]["p50_us"] == 5.0  # nearest rank over the pooled six
    assert got["read"]["c"]["value"] == 7


def test_pool_sums_counts_weights_first_try_and_takes_the_median_of_other_numbers() -> None:
    boots = [{"tries": 10, "readable": 9, "first_try": 0.5, "attempts_max": 3, "hold_s": 1.0},
             {"tries": 30, "readable": 30, "first_try": 1.0, "attempts_max": 1, "hold_s": 5.0},
             {"tries": 10, "readable": 10, "first_try": 0.0, "attempts_max": 2, "hold_s": 2.0}]
    got = pool.pool(boots)
    assert (got["tries"], got["readable"], got["attempts_max"]) == (50, 49, 3)
    assert got["first_try"] == pytest.approx((5 + 30 + 0) / 50)
    assert got["hold_s"] == 2.0
    assert pool.pool([3, 5, 4]) == 4 and isinstance(pool.pool([3, 5, 4]), int)  # ints stay ints
    assert pool.pool([3, 4]) == 3.5


def test_pool_skips_a_boot_that_did_not_measure_a_part() -> None:
    got = pool.pool([{"x": stats.not_measured("boom")}, {"x": {"samples_ns": [4000]}}, {"x": {"samples_ns": [2000]}}])
    assert got["x"] == {"samples_ns": [4000, 2000]}
    none = pool.pool([{"x": stats.not_measured("boom")}, {"x": stats.not_measured("bang")}])
    assert none["x"] == stats.not_measured("boom")


def test_pool_concatenates_a_dict_of_sample_lists_key_by_key() -> None:
    boots = [{"samples_ns": {"none": {"mkdir": [1, 2], "rmdir": [3]}}},
             {"samples_ns": {"none": {"mkdir": [4], "rmdir": [5, 6]}}}]
    assert pool.pool(boots)["samples_ns"] == {"none": {"mkdir": [1, 2, 4], "rmdir": [3, 5, 6]}}


def test_pool_of_no_boots_is_an_error() -> None:
    with pytest.raises(ValueError, match="no boots"):
        pool.pool([])


def test_spread_gives_each_boots_median_and_value_by_path() -> None:
    boots = [{"read": {"c": _series([1000, 3000, 5000])}, "wall_s": 10.0},
             {"read": {"c": _series([2000])}, "wall_s": 12.0},
             {"read": stats.not_measured("no"), "wall_s": 11.0}]
    sp = pool.spread(boots)
    assert sp["read.c.samples_ns"] == [3.0, 2.0, None]
    assert sp["wall_s"] == [10.0, 12.0, 11.0]
    assert sp["read.boots_missing"] == [2.0]
    assert "read.c.summary.p50_us" not in sp  # summaries are the samples' again
    assert pool.per_boot(sp, "read.c") == [3.0, 2.0, None]


def test_spread_of_a_dict_of_sample_lists() -> None:
    boots = [{"s": {"samples_ns": {"none": {"mkdir": [1000]}}}}, {"s": {"samples_ns": {"none": {"mkdir": [3000]}}}}]
    assert pool.spread(boots) == {"s.samples_ns.none.mkdir": [1.0, 3.0]}


@pytest.mark.parametrize(("values", "text"), [
    ([41.23, 40.9, None], "boots: 41.2 / 40.9 / - us"),
    ([0.5], ""),
    (None, ""),
])
def test_fmt_spread(values: list[float | None] | None, text: str) -> None:
    assert pool.fmt_spread(values) == text


Z = dict.fromkeys(("nr_sleeping", "nr_running", "nr_stopped", "nr_uninterruptible", "nr_io_wait"), 0)


@pytest.mark.parametrize(("nanosleep", "pipe_read", "start"), [
    (Z, Z | {"nr_sleeping": 1}, "explained: a task asleep in nanosleep"),
    (Z | {"nr_sleeping": 1}, Z | {"nr_sleeping": 1}, "both sleepers count"),
    (Z, Z, "unexpected counts: nanosleep 0"),
])
def test_netlink_explain(nanosleep: dict[str, int], pipe_read: dict[str, int], start: str) -> None:
    assert netlink_check.explain(nanosleep, pipe_read).startswith(start)


def _boot(sha: str, samples: list[int], exit_code: int = 0) -> dict[str, Any]:
    mk = {c: {"mkdir": list(samples), "rmdir": list(samples)} for c in ("none", "a1:1", "a2:1", "a1:4", "a2:4")}
    return {"image": {"sha256": sha}, "kernel": "7.3", "booted_matches_image": True, "guest_exit": exit_code,
            "wall_s": 100.0, "guest_run_s": 90.0, "seed": len(samples),
            "stock": {"read": {"prog_run": {"c": _series(samples)}}, "order": {"seed": len(samples)}},
            "bench_a2": {"mkdir": {"rounds": len(samples), "none_mkdir_us": 99.0, "samples_ns": mk, "seed": 1},
                         "stall": {"idle_samples_ns": [1_000_000], "a1_samples_ns": [3_000_000],
                                   "idle_worst_ms": 1.0, "a1_worst_ms": 3.0, "a1_vs_idle": 3.0}}}


def test_pool_boots_pools_one_image_and_rederives_the_bench_figures() -> None:
    from bpffs_sync.measure.report import guest

    docs = [_boot("aa", [1000, 2000]), stats.not_measured("no boot"), _boot("aa", [4000], 3), _boot("bb", [9000])]
    got = guest.pool_boots(docs)
    assert got["pooled_boots"] == 2
    assert got["stock"]["read"]["prog_run"]["c"]["samples_ns"] == [1000, 2000, 4000]
    assert [r.get("left_out", "") for r in got["boots"]][3].startswith("another image")
    assert got["boots"][1] == {"boot": 1, "not_measured": "no boot"}
    assert got["boots"][2]["seed"] == 1 and got["boots"][2]["order"] == {"seed": 1}
    assert (got["guest_exit"], got["wall_s"]) == (3, 200.0)
    mk = got["bench_a2"]["mkdir"]
    assert mk["rounds"] == 3 and mk["none_mkdir_us"] == 2.0  # the pooled median, not the boots' 99
    assert mk["1"]["a1_mkdir_vs_none"] == 1.0
    assert got["spread"]["stock.read.prog_run.c.samples_ns"] == [1.0, 4.0]  # nearest rank
    cost = guest.pool_boots([{"image": {"sha256": "a"}, "stock": {"mkdir_cost": {"cgroups": 40}}}] * 3)
    assert cost["stock"]["mkdir_cost"]["cgroups"] == 120  # every boot's cgroups are in the pooled samples
    stall: dict[str, Any] = {"idle_samples_ns": [1_000_000, 2_000_000], "a1_samples_ns": [3_000_000, 8_000_000]}
    doc: dict[str, Any] = {"bench_a2": {"stall": stall}}
    guest._rederive(doc)
    assert doc["bench_a2"]["stall"]["a1_vs_idle"] == 4.0 and doc["bench_a2"]["stall"]["a1_overlapping"] == 2


def test_pool_boots_with_no_measured_boot_keeps_the_first_reason() -> None:
    from bpffs_sync.measure.report import guest

    got = guest.pool_boots([stats.not_measured("a"), stats.not_measured("b")])
    assert got["not_measured"] == "a" and len(got["boots"]) == 2


def test_run_boots_boots_n_times_with_a_seed_each(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from bpffs_sync.measure.report import guest

    calls: list[tuple[str, int | None, str]] = []

    def fake(out_dir: Any, mode: str, on_progress: Any = None, *, seed: int | None = None,
             sub: str = "guest") -> dict[str, Any]:
        calls.append((mode, seed, sub))
        on_progress("reads")
        return _boot("aa", [1000 * (len(calls))])

    monkeypatch.setattr(guest, "run_guest", fake)
    lines: list[str] = []
    got = guest.run_boots(tmp_path, "full", 3, 5, lines.append)
    assert calls == [("full", 5, "guest/boot0"), ("full", 1005, "guest/boot1"), ("full", 2005, "guest/boot2")]
    assert lines == ["boot 1/3: reads", "boot 2/3: reads", "boot 3/3: reads"]
    assert got["pooled_boots"] == 3 and got["stock"]["read"]["prog_run"]["c"]["samples_ns"] == [1000, 2000, 3000]
