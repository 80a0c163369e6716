"""The demo scenario against the real kernel: a busy cgroup, an idle sibling, kernel accounting."""

from __future__ import annotations

import os

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.commands.demo import burn_in
from bpffs_sync.histogram import format_stat, parse_stat


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def cpu_stat_usage_ns(cgroup_dir: str) -> int:
    """The kernel's own v2 accounting (cpu.stat usage_usec, rstat; present without the cpu controller)."""
    for line in read(os.path.join(cgroup_dir, "cpu.stat")).splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) * 1000
    raise AssertionError("no usage_usec in cpu.stat")


@pytest.fixture
def busy(mirror: Mirror) -> Mirror:
    for rel in ("jobs", "jobs/a", "jobs/b"):
        os.mkdir(mirror.cg(rel))
    mirror.start()
    wait_for(lambda: os.path.exists(mirror.stat_path("jobs/b")), 10, "jobs/b mirrored")
    return mirror


def test_busy_cgroup_matches_process_cpu_time(busy: Mirror) -> None:
    """A CPU burner in jobs/a: total on-CPU time agrees with its user+sys time within 10 %."""
    cpu = burn_in(busy.cg("jobs/a"), 1.0)
    stat = parse_stat(read(busy.stat_path("jobs/a")))
    assert stat.summary["slices"] > 0
    assert sum(stat.slots) == stat.summary["slices"]
    total = stat.summary["total_ns"] / 1e9
    assert abs(total - cpu) / cpu < 0.10, f"hist_oncpu {total:.3f} s vs user+sys {cpu:.3f} s"


def test_busy_cgroup_matches_kernel_cpu_stat(busy: Mirror) -> None:
    """hist_oncpu's total agrees with the kernel's cpu.stat usage_usec of the same cgroup within 10 %."""
    burn_in(busy.cg("jobs/a"), 0.5)
    total = parse_stat(read(busy.stat_path("jobs/a"))).summary["total_ns"]
    usage = cpu_stat_usage_ns(busy.cg("jobs/a"))
    assert usage > 0
    assert abs(total - usage) / usage < 0.10, f"hist_oncpu {total} ns vs cpu.stat {usage} ns"


def test_idle_sibling_shows_zero(busy: Mirror) -> None:
    """jobs/b ran nothing: zero time, zero slices, and no histogram rows."""
    burn_in(busy.cg("jobs/a"), 0.3)
    text = read(busy.stat_path("jobs/b"))
    stat = parse_stat(text)
    assert stat.summary["total_ns"] == 0 and stat.summary["slices"] == 0
    assert "usecs" not in text


def test_parent_is_hierarchical(busy: Mirror) -> None:
    """jobs includes jobs/a's time, like cpu.stat (charges go to every ancestor)."""
    burn_in(busy.cg("jobs/a"), 0.3)
    a = parse_stat(read(busy.stat_path("jobs/a"))).summary
    jobs = parse_stat(read(busy.stat_path("jobs"))).summary
    assert jobs["total_ns"] >= a["total_ns"] > 0


def test_file_reports_its_cgroup_and_bcc_layout(busy: Mirror) -> None:
    """The file names the cgroup it serves, and its text is exactly the reference printer's."""
    burn_in(busy.cg("jobs/a"), 0.2)
    text = read(busy.stat_path("jobs/a"))
    stat = parse_stat(text)
    assert stat.summary["cgroup_id"] == os.stat(busy.cg("jobs/a")).st_ino
    assert stat.unit == "usecs"
    assert text == format_stat(stat)


def test_second_read_of_same_fd_returns_eof(busy: Mirror) -> None:
    """One read() returns the whole file; the next read on the fd returns 0 (seq_file semantics)."""
    fd = os.open(busy.stat_path("jobs/a"), os.O_RDONLY)
    try:
        first = os.read(fd, 32768)
        assert first.startswith(b"cgroup_id: ")
        assert os.read(fd, 32768) == b""
    finally:
        os.close(fd)
