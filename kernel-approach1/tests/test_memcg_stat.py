"""memcg_stat (bpf/memcg_stat.bpf.c), a SEC("cgroup/stat.s") reader built on the 7.3 memcg
kfuncs: it needs the sleepable variant of the program type (bpf_mem_cgroup_flush_stats() sleeps)
and the kfuncs the type gets. Its lines equal memory.stat's lines of the same name for the same
cgroup, read while the cgroup's only task is stopped (so the counters hold still)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from test_cgroup_stat import mirror_of

from bpffs_sync import libbpf, series
from bpffs_sync.programs import object_dir

BPF_F_SLEEPABLE = 1 << 4
NAME = "memcg_stat"
ANON_MIB = 24
SHMEM_MIB = 8


class SleepableReader:
    """bpf/memcg_stat's cgroup/stat.s object opened with the system libbpf, which predates the
    series: the type, attach type and BPF_F_SLEEPABLE are set by hand, as bpffs-sync does."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        lib.bpf_object__open_file.restype = ctypes.c_void_p
        lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.bpf_object__find_program_by_name.restype = ctypes.c_void_p
        lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for fn in ("bpf_program__set_type", "bpf_program__set_expected_attach_type", "bpf_program__set_flags"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_uint]
            getattr(lib, fn).restype = ctypes.c_int
        lib.bpf_object__load.argtypes = [ctypes.c_void_p]
        lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
        lib.bpf_object__close.argtypes = [ctypes.c_void_p]
        self._lib = lib
        path = os.path.join(object_dir(), "memcg_stat.stat.bpf.o")
        self._obj = lib.bpf_object__open_file(path.encode(), None)
        assert self._obj, f"open {path}: errno {ctypes.get_errno()}"
        prog = lib.bpf_object__find_program_by_name(self._obj, NAME.encode())
        assert prog
        uapi = series.uapi()
        assert lib.bpf_program__set_type(prog, uapi.prog_type) == 0
        assert lib.bpf_program__set_expected_attach_type(prog, uapi.attach_type) == 0
        assert lib.bpf_program__set_flags(prog, BPF_F_SLEEPABLE) == 0
        err = lib.bpf_object__load(self._obj)
        assert err == 0, f"load memcg_stat: {err}"
        self.fd: int = lib.bpf_program__fd(prog)

    def close(self) -> None:
        self._lib.bpf_object__close(self._obj)


@pytest.fixture
def reader() -> Iterator[SleepableReader]:
    r = SleepableReader()
    try:
        yield r
    finally:
        r.close()


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


def test_memcg_stat_equals_memory_stat(mirror_fs: str, cg: str, reader: SleepableReader,
                                       link_fds: list[int]) -> None:
    enable_memory(cg)
    job = os.path.join(cg, "job")
    os.mkdir(job)
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    link_fds.append(cg_fd)
    link_fds.append(libbpf.link_create_cgroup_stat(reader.fd, cg_fd, NAME))
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


def test_memcg_stat_of_a_cgroup_without_memory_controller(mirror_fs: str, cg: str, reader: SleepableReader,
                                                           link_fds: list[int]) -> None:
    """No memory controller on the cgroup (its parent does not enable it): bpf_get_mem_cgroup()
    finds no memcg and the file reads empty, with no error."""
    plain = os.path.join(cg, "plain")
    os.mkdir(plain)
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    link_fds.append(cg_fd)
    link_fds.append(libbpf.link_create_cgroup_stat(reader.fd, cg_fd, NAME))
    with open(os.path.join(mirror_of(mirror_fs, plain), NAME), encoding="ascii") as f:
        text = f.read()
    assert text == ""
