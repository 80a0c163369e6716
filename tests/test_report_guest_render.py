"""Unit tests of render_guest.py: the cross-check rows (host ratio against guest ratio, each to its own
machine's cpu.stat), the per-boot ratios and the one-boot table's cells."""

from __future__ import annotations

from typing import Any

import pytest

from bpffs_sync.measure.report import render, render_guest, stats
from bpffs_sync.measure.report.stats import RatioEst


def _entry(samples: list[int]) -> dict[str, Any]:
    return {"c": {"value": 1, "summary": stats.summarize_ns(samples), "samples_ns": samples}}


def _around(center: int, n: int = 200) -> list[int]:
    return [center + (i % 21) - 10 for i in range(n)]


def test_crosscheck_rows_compare_ratios_within_each_machine() -> None:
    host = {"cpu_stat": _entry(_around(10_000)), "prog_run": _entry(_around(2_000)),
            "mirror_iter": _entry(_around(20_000)), "map_lookup": stats.not_measured("x"), "host_only": _entry([1])}
    guest = {"cpu_stat": _entry(_around(100_000)), "prog_run": _entry(_around(60_000)),
             "mirror_iter": _entry(_around(200_000)), "map_lookup": _entry(_around(5_000))}
    rows = {r.key: r for r in render_guest.crosscheck_rows(host, guest)}
    assert set(rows) == {"prog_run", "mirror_iter", "map_lookup"}  # the baseline and host-only rows left out
    pr = rows["prog_run"]
    assert pr.host is not None and pr.guest is not None
    assert pr.host.value == pytest.approx(0.2, rel=0.01) and pr.guest.value == pytest.approx(0.6, rel=0.01)
    assert pr.shift == pytest.approx(3.0, rel=0.02)
    assert pr.reading.startswith("dearer in the guest")
    assert rows["mirror_iter"].reading.startswith("the same against cpu.stat")
    assert rows["map_lookup"].host is None and rows["map_lookup"].shift is None
    assert rows["map_lookup"].reading == "not compared: host ratio not measured"


@pytest.mark.parametrize(("host", "guest", "start"), [
    ((1.0, 0.9, 1.1), (2.0, 1.8, 2.2), "dearer in the guest"),
    ((1.0, 0.9, 1.1), (0.5, 0.4, 0.6), "cheaper in the guest"),
    ((1.0, 0.9, 1.1), (1.05, 1.0, 1.2), "the same against cpu.stat"),
    (None, (1.0, 0.9, 1.1), "not compared: host"),
    ((1.0, 0.9, 1.1), None, "not compared: guest"),
])
def test_reading(host: tuple[float, float, float] | None, guest: tuple[float, float, float] | None,
                 start: str) -> None:
    h = RatioEst(*host, 10, 10) if host else None
    g = RatioEst(*guest, 10, 10) if guest else None
    assert render_guest.reading(h, g).startswith(start)


def test_per_boot_ratio() -> None:
    assert render_guest.per_boot_ratio([2.0, None, 9.0], [1.0, 1.0, 3.0]) == [2.0, None, 3.0]
    assert render_guest.per_boot_ratio([2.0], [1.0, 2.0]) is None
    assert render_guest.per_boot_ratio(None, [1.0]) is None


def _doc(stock: Any, spread: dict[str, list[float | None]] | None = None) -> dict[str, Any]:
    patched: dict[str, Any] = {"stock": stock, "pooled_boots": 2, "boots": [{"boot": 0, "seed": 1}, {"boot": 1,
                                                                                                     "seed": 1001}]}
    if spread is not None:
        patched["spread"] = spread
    return {"patched": patched, "read": {}, "netlink_check": {"finding": "explained: x"}}


def test_one_boot_table_has_every_mechanism_and_the_boots_spread() -> None:
    stock = {"mechanisms": [{"key": "cpu_stat", "label": "cpu.stat", "what": "usage"},
                            {"key": "a1_file", "label": "A1 file", "what": "text"}],
             "read": {"cpu_stat": _entry(_around(10_000)), "a1_file": _entry(_around(30_000)),
                      "netlink": stats.not_measured("boom")},
             "churn": {}, "knobs": {"map_update": _entry(_around(3000)), "xattr_set": _entry(_around(6000))},
             "equal_work": {"full text": {"equal": True}}, "netlink_check": {"finding": "explained: y"},
             "files": {"a1": "/x/hist_oncpu", "a2": stats.not_measured("link: EINVAL")}}
    spread: dict[str, list[float | None]] = {"stock.read.a1_file.c.samples_ns": [30.0, 31.0],
                                             "stock.read.cpu_stat.c.samples_ns": [10.0, 10.0]}
    sec = render_guest.one_boot(_doc(stock, spread))
    rows = {r[0]: r for r in sec.tables[0][1]}
    assert rows["A1 file (text)"][4].startswith("3.00x cpu.stat [")
    assert rows["A1 file (text)"][5] == "boots: 30.0 / 31.0 us; 3.00 / 3.10x cpu.stat"
    assert rows["cpu.stat (usage)"][4] == "the baseline"
    assert rows["netlink"][1] == "not measured: boom"
    assert rows["Approach 2 file"][1] == "not measured: link: EINVAL"
    assert "full text: holds" in " ".join(sec.text) and "guest: explained: y" in " ".join(sec.text)
    assert render.check_cells([sec]) == []


def test_one_boot_and_crosscheck_without_a_guest_say_why() -> None:
    doc = {"patched": stats.not_measured("--kernel no"), "read": {}}
    assert render_guest.one_boot(doc).text == ["not measured: --kernel no"]
    assert "--kernel no" in render_guest.crosscheck(doc).text[0]


def test_verdict_quotes_the_files_of_one_machine() -> None:
    from bpffs_sync.measure.report import verdict

    stock = {"read": {"cpu_stat": _entry(_around(10_000)), "mirror_iter": _entry(_around(20_000)),
                      "a1_file": _entry(_around(30_000))}}
    got = verdict.one_boot_files(_doc(stock))
    assert got is not None
    ratios = {n: r.value if r else None for n, r in got}
    assert ratios["the user-space mirror's file"] == pytest.approx(2.0, rel=0.01)
    assert ratios["Approach 1's"] == pytest.approx(3.0, rel=0.01) and ratios["Approach 2's"] is None
    assert verdict.one_boot_files(_doc(stats.not_measured("x"))) is None
