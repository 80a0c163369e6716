"""A mkdir/rmdir storm on every CPU while links are attached, updated and detached and the files are
read: nothing may splat (run-guest.sh fails the run on any WARNING/BUG/lockdep line in dmesg), no
operation may fail other than with the errnos a race explains, and afterwards every link's count
equals its files and `verify` is in sync. Loops are counted, not timed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading

from conftest import CGROUP2, NAME, cgroups_under, files_under, link_desc

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a2
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup

ROUNDS = 150  # mkdir/rmdir rounds per CPU
CYCLES = 25  # attach -> update -> detach cycles

STORM = r"""
import os, sys
cpu, top, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
os.sched_setaffinity(0, {cpu})
for i in range(rounds):
    a = os.path.join(top, f"c{cpu}-{i % 7}")
    b = os.path.join(a, "child.scope")
    os.mkdir(a); os.mkdir(b)
    for d in (b, a):
        for f in os.listdir(d):
            if f.startswith("bpf.stat."):
                try:
                    open(os.path.join(d, f)).read()
                except OSError:
                    pass
    os.rmdir(b); os.rmdir(a)
"""


def test_storm_with_links_coming_and_going(stat: kernel_a2.CgroupfsStat, pins_fs: str, cg: str,
                                           link_fds: list[int]) -> None:
    """mkdir/rmdir on each CPU + attach/update/detach + reads: clean dmesg, exact counts, verify in sync."""
    storms = [subprocess.Popen([sys.executable, "-c", STORM, str(cpu), cg, str(ROUNDS)])
              for cpu in sorted(os.sched_getaffinity(0))]
    read_errors: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for d, _dirs, files in os.walk(cg):
                for f in files:
                    if f.startswith("bpf.stat."):
                        try:
                            with open(os.path.join(d, f), "rb") as fh:
                                fh.read()
                        except OSError as err:
                            if err.errno not in (errno.ENOENT, errno.ENODEV):
                                read_errors.append(err.errno or 0)

    t = threading.Thread(target=reader)
    t.start()
    try:
        with kernel_a2.CgroupfsStat(Layout(pins_fs, CGROUP2), lookup(NAME)) as other:
            for i in range(CYCLES):
                fd = stat.attach(cg, "storm")
                inner = stat.attach(CGROUP2, "stormroot") if i % 5 == 0 else None
                libbpf.link_update(fd, other.stat.reader.fd() if i % 2 else stat.stat.reader.fd())
                libbpf.link_detach(fd)
                os.close(fd)
                if inner is not None:
                    libbpf.link_detach(inner)
                    os.close(inner)
            link_fds.append(stat.attach(cg, "last"))
    finally:
        codes = [p.wait() for p in storms]
        stop.set()
        t.join()
    assert codes == [0] * len(storms)
    assert read_errors == []
    assert files_under(cg, "bpf.stat.last") == cgroups_under(cg)
    assert link_desc(link_fds[0]).nr_files == len(cgroups_under(cg))
    assert files_under(cg, "bpf.stat.storm") == set()
    report = kernel_a2.verify(cg)
    assert report.in_sync, report.to_text()
