"""The exporter's pure parts: stat text -> Prometheus families, labels, filters, argument checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bpffs_sync.export.files import Filter, Reading
from bpffs_sync.export.render import BUCKETS, MAX_SLOTS, bucket_bounds, label_value, render
from bpffs_sync.histogram import StatFile, format_stat

pytestmark = pytest.mark.unit


def _hist(slots: list[int], total_ns: int, slices: int) -> str:
    return format_stat(StatFile({"cgroup_id": 7, "total_ns": total_ns, "slices": slices}, "usecs", slots))


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_hist_oncpu_buckets_are_cumulative_seconds() -> None:
    """Slot i (2^i..2^(i+1)-1 usecs) lands in le=2^(i+1) us, cumulatively; _sum is total_ns in seconds."""
    text = render([Reading("", "/jobs/a", "hist_oncpu", _hist([1, 0, 2, 4], 3_000_000_000, 7))],
                  detail=BUCKETS).text()
    s = _samples(text)
    pre = 'bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/jobs/a",le='
    assert s[pre + '"2e-06"}'] == 1
    assert s[pre + '"4e-06"}'] == 1
    assert s[pre + '"8e-06"}'] == 3
    assert s[pre + '"1.6e-05"}'] == 7
    assert s[pre + '"+Inf"}'] == 7
    assert s['bpffs_sync_hist_oncpu_seconds_sum{cgroup="/jobs/a"}'] == 3.0
    assert s['bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a"}'] == 7
    assert "# TYPE bpffs_sync_hist_oncpu_seconds histogram" in text


def test_count_never_below_the_buckets() -> None:
    """A file whose slices line lags its slots still gives monotonic buckets: +Inf = _count = sum of slots."""
    s = _samples(render([Reading("", "/", "hist_oncpu", _hist([5, 5], 10, 8))], detail=BUCKETS).text())
    assert s['bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/",le="+Inf"}'] == 10
    assert s['bpffs_sync_hist_oncpu_seconds_count{cgroup="/"}'] == 10


def test_clamped_last_slot_counts_only_towards_inf() -> None:
    """The last slot holds >= 2^26 usecs (clamped): no finite bucket contains it."""
    slots = [0] * MAX_SLOTS
    slots[-1] = 3
    s = _samples(render([Reading("", "/", "hist_oncpu", _hist(slots, 1, 3))], detail=BUCKETS).text())
    finite = [v for k, v in s.items() if "_bucket" in k and "+Inf" not in k]
    assert len(finite) == MAX_SLOTS - 1
    assert max(finite) == 0
    assert s['bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/",le="+Inf"}'] == 3


def test_bucket_stride_keeps_every_kth_boundary() -> None:
    """--bucket-stride 2 keeps le = 4, 16, 64 ... us, with the same cumulative counts."""
    bounds = bucket_bounds(2)
    assert [le for _, le in bounds[:3]] == ["4e-06", "1.6e-05", "6.4e-05"]
    s = _samples(render([Reading("", "/", "hist_oncpu", _hist([1, 1, 1, 1], 1, 4))], stride=2,
                        detail=BUCKETS).text())
    assert s['bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/",le="1.6e-05"}'] == 4
    assert 'bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/",le="8e-06"}' not in s


def test_v1_series_carry_the_hierarchy() -> None:
    """A v1 reading is labelled hierarchy + cgroup; a v2 one cgroup only."""
    text = render([Reading("cpu,cpuacct", "/jobs", "hist_oncpu", _hist([1], 1, 1))]).text()
    assert 'bpffs_sync_hist_oncpu_seconds_count{hierarchy="cpu,cpuacct",cgroup="/jobs"} 1' in text


def test_label_values_are_escaped() -> None:
    """printable.escape's text (a newline or control character as \\xNN, a backslash doubled, a byte that is
    not UTF-8 as \\xNN), then the text format's escapes of quotes and backslashes: one line, no collision."""
    assert label_value('a"b\\c\nd') == 'a\\"b\\\\\\\\c\\\\x0ad'
    raw = "/x" + b"\xff".decode("utf-8", "surrogateescape")
    assert label_value(raw) == "/x\\\\xff"
    assert label_value("/x\\xff") == "/x\\\\\\\\xff"  # the four characters: not the byte's value
    assert label_value("esc\x1b[2J") == "esc\\\\x1b[2J"


def test_default_detail_is_sum_and_count() -> None:
    """The default (summary) level: hist_oncpu is a summary of _sum and _count, no bucket; 2 series."""
    text = render([Reading("", "/jobs/a", "hist_oncpu", _hist([1, 0, 2, 4], 3_000_000_000, 7))]).text()
    s = _samples(text)
    assert s == {'bpffs_sync_hist_oncpu_seconds_sum{cgroup="/jobs/a"}': 3.0,
                 'bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a"}': 7}
    assert "# TYPE bpffs_sync_hist_oncpu_seconds summary" in text


def test_memcg_costs_six_series_by_default() -> None:
    """A v1 memory cgroup's memcg_histo: four values + _sum + _count at the default level."""
    stat = StatFile({"cgroup_id": 3, "usage_bytes": 1, "limit_bytes": 2, "max_usage_bytes": 1, "failcnt": 0,
                     "reclaim_ns": 0, "reclaims": 0}, "usecs", [0])
    assert len(_samples(render([Reading("memory", "/a", "memcg_histo", format_stat(stat))]).text())) == 6


def test_series_carry_workload_labels() -> None:
    """A systemd service's series carry unit and slice after cgroup."""
    text = render([Reading("", "/system.slice/foo.service", "hist_oncpu", _hist([1], 1, 1))]).text()
    assert ('bpffs_sync_hist_oncpu_seconds_count{cgroup="/system.slice/foo.service",unit="foo.service",'
            'slice="system.slice"} 1') in text


def test_memcg_histo_gauges_counter_and_histogram() -> None:
    """memcg_histo: usage/limit as gauges, failcnt as a counter, reclaim stalls as a histogram in seconds."""
    stat = StatFile({"cgroup_id": 3, "usage_bytes": 4096, "limit_bytes": 8192, "max_usage_bytes": 4096,
                     "failcnt": 2, "reclaim_ns": 5_000_000, "reclaims": 1}, "usecs", [0, 0, 1])
    text = render([Reading("memory", "/a", "memcg_histo", format_stat(stat))], detail=BUCKETS).text()
    lab = '{hierarchy="memory",cgroup="/a"}'
    s = _samples(text)
    assert s["bpffs_sync_memcg_usage_bytes" + lab] == 4096
    assert s["bpffs_sync_memcg_failcnt_total" + lab] == 2
    assert s["bpffs_sync_memcg_reclaim_seconds_sum" + lab] == 0.005
    assert "# TYPE bpffs_sync_memcg_failcnt_total counter" in text
    assert "# TYPE bpffs_sync_memcg_limit_bytes gauge" in text


def test_unparsable_file_is_counted_not_raised() -> None:
    """A stat file that does not parse is skipped and counted."""
    fams = render([Reading("", "/", "hist_oncpu", "garbage without a colon\n")])
    assert fams.parse_errors == 1
    assert "hist_oncpu_seconds_bucket" not in fams.text()


def test_filter_include_and_exclude() -> None:
    """Include globs select, exclude globs win; `*` crosses `/`."""
    flt = Filter(None, ("/jobs*",), ("/jobs/tmp*",))
    assert flt.wants("/jobs/a/b")
    assert not flt.wants("/jobs/tmp/x")
    assert not flt.wants("/system.slice")
    assert Filter().wants("/anything")


@pytest.mark.parametrize("args", [["--port", "70000"], ["--max-depth", "-1"], ["--bucket-stride", "0"],
                                  ["--bucket-stride", "2"], ["--detail", "all"],
                                  ["--include", "jobs/*"], ["--verify-interval", "-5"]])
def test_export_rejects_bad_arguments(args: list[str]) -> None:
    """Each bad export argument is one `bpffs-sync: error:` line and exit 2."""
    res = subprocess.run([sys.executable, "-m", "bpffs_sync", "export", *args], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2
    assert res.stderr.startswith("bpffs-sync: error: ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_version_flag() -> None:
    """`bpffs-sync --version` prints the distribution's version."""
    from importlib import metadata

    res = subprocess.run([sys.executable, "-m", "bpffs_sync", "--version"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert res.stdout.strip() == f"bpffs-sync {metadata.version('bpffs-sync')}"


# --- /healthz's verdict (published.judge) -------------------------------------------------------------------


def test_judge_counts_resync_intervals() -> None:
    """Stale after stale_after x the interval the daemon published: 29 s of 3 x 10 s is ok, 31 s is not."""
    from bpffs_sync.export.published import DaemonState, judge

    doc = {"resync_interval": 10.0, "last_pass_at": 1000.0, "started_at": 1.0}
    assert judge(DaemonState(True, doc), 1029.0) == (True, "ok")
    ok, why = judge(DaemonState(True, doc), 1031.0)
    assert not ok and why == "stale: last pass 31 s ago, more than 3 x the 10 s resync interval"
    assert judge(DaemonState(True, doc), 1031.0, stale_after=4)[0]


def test_judge_without_a_document_uses_the_lock_and_the_default_interval() -> None:
    """A daemon that holds the lock but wrote nothing yet: its lock's time and the default 30 s interval."""
    from bpffs_sync.export.published import DaemonState, judge

    assert judge(DaemonState(True, {}, since=1000.0), 1089.0)[0]
    assert judge(DaemonState(True, {}, since=1000.0), 1091.0)[1].startswith("stale: started, no pass yet, 91 s ago")


def test_judge_refused_and_down() -> None:
    """A run directory we refuse, or no holder: unhealthy, each with its own line."""
    from bpffs_sync.export.published import DaemonState, judge

    assert judge(DaemonState(False, refused="run directory /x: mode 0777"), 0) == (
        False, "run directory refused: run directory /x: mode 0777")
    assert judge(DaemonState(False), 0) == (False, "no bpffs-sync run holds this bpffs")
