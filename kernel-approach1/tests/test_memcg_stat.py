"""memcg_stat (bpf/memcg_stat.bpf.c), a SEC("cgroup/stat.s") reader built on the 7.3 memcg
kfuncs: it needs the sleepable variant of the program type (bpf_mem_cgroup_flush_stats() sleeps)
and the kfuncs the type gets. Its lines equal memory.stat's lines of the same name for the same
cgroup, read while the cgroup's only task is stopped (so the counters hold still)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import CGROUP2
from series_fixtures import LoadedStats
from test_cgroup_stat import mirror_of

from bpffs_sync.backends import kernel_a1
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup

NAME = "memcg_stat"
ANON_MIB = 24
SHMEM_MIB = 8


@pytest.fixture
def reader(mirror_fs: str, loaded_stats: LoadedStats) -> kernel_a1.KernelMirror:
    """memcg_stat through bpffs-sync's own loader (once per session), which sets BPF_F_SLEEPABLE
    from the reader's section name: the system libbpf predates SEC("cgroup/stat.s")."""
    return loaded_stats.get(kernel_a1.KernelMirror, Layout(mirror_fs, CGROUP2), lookup(NAME))


HOG = f"""
import mmap, os, signal, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
anon = mmap.mmap(-1, {ANON_MIB} << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # not shmem
for off in range(0, len(anon), 4096):
    anon[off] = 1
fd = os.open("/dev/shm/memcg-stat-test-%d" % os.getpid(), os.O_CREAT | os.O_RDWR, 0o600)
os.ftruncate(fd, {SHMEM_MIB} << 20)
shm = mmap.mmap(fd, {SHMEM_MIB} << 20)
for off in range(0, len(shm), 4096):
    shm[off] = 1
os.unlink("/dev/shm/memcg-stat-test-%d" % os.getpid())
sys.stdout.write("ready\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


def parse(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = int(value)
    return out


def enable_memory(cg: str) -> None:
    for d in ("/sys/fs/cgroup", cg):
        with open(os.path.join(d, "cgroup.subtree_control"), "w", encoding="ascii") as f:
            f.write("+memory")


def test_memcg_stat_equals_memory_stat(mirror_fs: str, cg: str, reader: kernel_a1.KernelMirror,
                                       link_fds: list[int]) -> None:
    enable_memory(cg)
    job = os.path.join(cg, "job")
    os.mkdir(job)
    link_fds.append(reader.attach(cg))
    hog = subprocess.Popen([sys.executable, "-c", HOG, job], stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline() == "ready\n"
        os.waitid(os.P_PID, hog.pid, os.WSTOPPED)
        path = os.path.join(mirror_of(mirror_fs, job), NAME)
        # Three reads, until the middle one (memory.stat) sits between two equal kfunc reads:
        # the counters did not move across it (a periodic flush, a kernel thread's charge).
        for _ in range(20):
            with open(path, encoding="ascii") as f:
                before = parse(f.read())
            with open(os.path.join(job, "memory.stat"), encoding="ascii") as f:
                stat = parse(f.read())
            with open(path, encoding="ascii") as f:
                after = parse(f.read())
            if before == after:
                break
        else:
            pytest.fail("memcg_stat never read the same twice around a memory.stat read")
        assert set(before) - set(stat) == set(), f"lines memory.stat does not have: {set(before) - set(stat)}"
        assert len(before) >= 20, before
        assert {k: before[k] for k in before} == {k: stat[k] for k in before}
        assert before["anon"] >= ANON_MIB << 20 and before["shmem"] >= SHMEM_MIB << 20, before
        assert before["pgfault"] > 0
    finally:
        hog.send_signal(signal.SIGKILL)
        hog.wait()


def test_memcg_stat_of_a_cgroup_without_memory_controller(mirror_fs: str, cg: str, reader: kernel_a1.KernelMirror,
                                                           link_fds: list[int]) -> None:
    """No memory controller on the cgroup (its parent does not enable it): bpf_get_mem_cgroup()
    finds no memcg and the file reads empty, with no error."""
    plain = os.path.join(cg, "plain")
    os.mkdir(plain)
    link_fds.append(reader.attach(cg))
    with open(os.path.join(mirror_of(mirror_fs, plain), NAME), encoding="ascii") as f:
        text = f.read()
    assert text == ""
