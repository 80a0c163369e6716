"""`bench sustained` (issue 8, Performance): a short run of the steady mkdir stream completes and
reports every cgroup mirrored, with both the lag and the inotify floor of the same run."""

from __future__ import annotations

import json

from helpers import cli

from bpffs_sync.measure.bench_sustained import render_sustained


def test_bench_sustained_short_run_mirrors_every_cgroup(kernel: None) -> None:
    """200 mkdirs/s for 2 s: all 400 made and mirrored, the daemon alive, a p99 ratio computed."""
    res = cli("bench", "sustained", "--rate", "200", "--seconds", "2", "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)["sustained"]
    assert (r["made"], r["mirrored"], r["floor_seen"]) == (400, 400, 400)
    assert r["daemon_alive"] is True
    assert r["ratio_p99"] == round(r["lag_ms"]["p99"] / r["inotify_floor_ms"]["p99"], 2)
    assert render_sustained(r).startswith("sustained 400 mkdirs")


def test_bench_rate_only_for_sustained() -> None:
    """--rate with another benchmark is a usage error: exit 2, one line."""
    res = cli("bench", "read", "--rate", "10")
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["bpffs-sync: error: bench --rate/--seconds: only for sustained"]
