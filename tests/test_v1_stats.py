"""memcg_histo and hist_oncpu in v1 trees agree with the kernel's own v1 files."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.histogram import parse_stat
from v1_controllers import cpu, memory

PAGE = os.sysconf("SC_PAGESIZE")
BATCH = 64 * PAGE * (os.cpu_count() or 1)  # MEMCG_CHARGE_BATCH pages of per-CPU stock per CPU
ALLOC = 64 << 20
_HOLD = ("import sys\nb = bytearray({n})\nb[::{page}] = b'\\x01' * ({n} // {page})\n"
         "print('ready', flush=True)\nsys.stdin.read()\n")


def read_stat(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        return parse_stat(f.read()).summary


def enter(*cgroup_dirs: str) -> None:
    for d in cgroup_dirs:
        with open(os.path.join(d, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(os.getpid()))


@pytest.fixture
def mem_mirror(mirror: Mirror, v1_memory: str) -> Iterator[tuple[Mirror, str]]:
    os.mkdir(os.path.join(v1_memory, "job"))
    mirror.start("--v1", v1_memory)
    yield mirror, os.path.join(v1_memory, "job")


def test_memcg_histo_equals_cgroupfs_files(mem_mirror: tuple[Mirror, str]) -> None:
    """A process holding 64 MiB: usage, limit, peak and failcnt match the v1 memory.* files."""
    mirror, job = mem_mirror
    with open(os.path.join(job, "memory.limit_in_bytes"), "w", encoding="ascii") as f:
        f.write(str(512 << 20))
    stat_file = os.path.join(mirror.bpffs, "cgroup-v1/memory/job/memcg_histo")
    wait_for(lambda: os.path.exists(stat_file), 10, "job mirrored")
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD.format(n=ALLOC, page=PAGE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, preexec_fn=lambda: enter(job))  # noqa: PLW1509 - this test process runs no threads
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        bpf = read_stat(stat_file)
        kernel = memory.kernel_figures(job)
    finally:
        proc.communicate("")
    assert bpf["cgroup_id"] == os.stat(job).st_ino
    assert bpf["usage_bytes"] >= ALLOC
    assert abs(bpf["usage_bytes"] - kernel["usage_bytes"]) <= BATCH, (bpf, kernel)
    assert abs(bpf["max_usage_bytes"] - kernel["max_usage_bytes"]) <= BATCH, (bpf, kernel)
    assert bpf["limit_bytes"] == kernel["limit_bytes"] == 512 << 20
    assert bpf["failcnt"] == kernel["failcnt"] == 0


def test_low_limit_shows_reclaim_and_failcnt(mem_mirror: tuple[Mirror, str]) -> None:
    """Reading a 96 MiB file under a 16 MiB limit: reclaim stalls in the histogram, failcnt > 0."""
    mirror, job = mem_mirror
    with open(os.path.join(job, "memory.limit_in_bytes"), "w", encoding="ascii") as f:
        f.write(str(16 << 20))
    fd, data = tempfile.mkstemp(prefix="bpffs-sync-memcg-", dir="/var/tmp")
    try:
        chunk = b"\xa5" * (1 << 20)
        for _ in range(96):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # cold: the reader's cache is charged to job
        os.close(fd)
        subprocess.run(["dd", f"if={data}", "of=/dev/null", "bs=1M"], check=True, capture_output=True,
                       preexec_fn=lambda: enter(job))
    finally:
        os.unlink(data)
    text_path = os.path.join(mirror.bpffs, "cgroup-v1/memory/job/memcg_histo")
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    stat = parse_stat(text)
    kernel = memory.kernel_figures(job)
    assert stat.summary["reclaims"] > 0 and stat.summary["reclaim_ns"] > 0, text
    assert sum(stat.slots) == stat.summary["reclaims"]
    assert stat.unit == "usecs"
    assert 0 < stat.summary["failcnt"] <= kernel["failcnt"]
    assert stat.summary["usage_bytes"] <= 16 << 20
    parent = read_stat(os.path.join(mirror.bpffs, "cgroup-v1/memory/memcg_histo"))
    assert parent["reclaims"] >= stat.summary["reclaims"]  # hierarchical, like the page counters


def burn_in_v1(seconds: float, *cgroup_dirs: str) -> float:
    """A CPU burner inside every given cgroup (one per hierarchy); returns its user+sys seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = f"import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"
    subprocess.run([sys.executable, "-c", code], preexec_fn=lambda: enter(*cgroup_dirs), check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_hist_oncpu_in_cpu_and_cpuacct_trees_matches_cpuacct_usage(mirror: Mirror, v1_cpu: str,
                                                                   v1_cpuacct: str) -> None:
    """A busy cgroup: hist_oncpu in the cpu and in the cpuacct tree each within 10 % of cpuacct.usage."""
    jobs = [os.path.join(root, "busy") for root in (v1_cpu, v1_cpuacct)]
    for d in jobs:
        os.mkdir(d)
    mirror.start("--v1", v1_cpu, "--v1", v1_cpuacct)
    files = [os.path.join(mirror.bpffs, f"cgroup-v1/{h}/busy/hist_oncpu") for h in ("cpu", "cpuacct")]
    wait_for(lambda: all(map(os.path.exists, files)), 10, "busy mirrored in both trees")
    burn_in_v1(1.0, *jobs)
    usage = cpu.kernel_figures(jobs[1])["total_ns"]
    assert usage > 0.5e9
    for path, d in zip(files, jobs, strict=True):
        stat = read_stat(path)
        assert stat["cgroup_id"] == os.stat(d).st_ino
        ratio = stat["total_ns"] / usage
        assert abs(ratio - 1) < 0.10, f"{path}: hist_oncpu {stat['total_ns']} ns vs cpuacct.usage {usage} ns"
    assert cpu.kernel_figures(jobs[0]) == {}  # a cpu-only hierarchy has no usage file on v1
