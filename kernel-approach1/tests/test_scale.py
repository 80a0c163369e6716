"""Scale and accounting: a cap on the links of a hierarchy, and the mirror's entries charged to
the memory cgroup of the link's creator rather than to whoever did the mkdir."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys

import pytest
from conftest import CGROUP2, link_desc
from test_cgroup_stat import mirror_of

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.errors import LibbpfError

MAX_LINKS = 64  # CGSTAT_MAX_LINKS in kernel/bpf/cgroup_stat.c
MKDIRS = 1000
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def test_links_per_hierarchy_are_capped(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """64 links in a hierarchy; the 65th gets E2BIG, and a detach makes room again."""
    link_fds.extend(stat.attach(cg, f"s{i}") for i in range(MAX_LINKS))
    with pytest.raises(LibbpfError) as exc:
        stat.attach(cg, "one_more")
    assert exc.value.errno == errno.E2BIG
    libbpf.link_detach(link_fds[0])
    link_fds.append(stat.attach(cg, "one_more"))
    assert link_desc(link_fds[-1]).nr_files == 1


def enable_memory(cgroup_dir: str) -> None:
    """+memory in the subtree_control of cgroup_dir and of each ancestor below the v2 root."""
    rel = os.path.relpath(cgroup_dir, CGROUP2)
    path = CGROUP2
    for part in ["", *rel.split(os.sep)]:
        path = os.path.join(path, part) if part else path
        with open(os.path.join(path, "cgroup.controllers"), encoding="ascii") as f:
            if "memory" not in f.read().split():
                pytest.skip("no memory controller in this guest")
        with open(os.path.join(path, "cgroup.subtree_control"), "w", encoding="ascii") as f:
            f.write("+memory")


def memory_current(cgroup_dir: str) -> int:
    with open(os.path.join(cgroup_dir, "memory.current"), encoding="ascii") as f:
        return int(f.read())


def link_from(cgroup_dir: str, root: str, name: str, pin: str) -> None:
    """From a process in cgroup_dir, link a cgroup stat program at root and pin the link at pin:
    the pin keeps it after the process exits."""
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {TESTS_DIR!r})\n"
        "import rawbpf\n"
        "from bpffs_sync import libbpf\n"
        f"open(os.path.join({cgroup_dir!r}, 'cgroup.procs'), 'w').write(str(os.getpid()))\n"
        "insns = rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id)\n"
        f"fd, _ = rawbpf.prog_load_cgroup_stat(insns, name={name!r})\n"
        f"link = rawbpf.link_create_cgroup_stat(fd, os.open({root!r}, os.O_RDONLY | os.O_DIRECTORY))\n"
        f"libbpf.obj_pin(link, {pin!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entries_are_charged_to_the_link_creator(mirror_fs: str, cg: str) -> None:
    """Root's mkdirs under a link made from another memory cgroup grow that cgroup's memory.current."""
    creator, tree = os.path.join(cg, "creator"), os.path.join(cg, "tree")
    enable_memory(cg)
    os.mkdir(creator)
    os.mkdir(tree)
    pin = os.path.join(mirror_fs, "cgstat_charged_link")
    link_from(creator, tree, "charged", pin)
    made = [os.path.join(tree, f"c{i}") for i in range(MKDIRS)]
    try:
        assert os.path.isfile(os.path.join(mirror_of(mirror_fs, tree), "charged"))
        before = memory_current(creator)
        for path in made:
            os.mkdir(path)
        grown = memory_current(creator) - before
    finally:
        for path in made:
            if os.path.isdir(path):
                os.rmdir(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pin)
    # a directory and a file per mkdir: two dentries and two bpffs inodes, ~2 KiB
    assert grown >= MKDIRS * 1024, f"the creator's cgroup grew by {grown} bytes only"
