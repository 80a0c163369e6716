"""One link-lifetime rule, the whole matrix, the rule of every BPF link: fds and pins keep a cgroup
stat link; when the last goes the link is detached and freed and its files removed. Its files do
not keep it (v3; v2 kept every link attached until BPF_LINK_DETACH, so libbpf's bpf_link__destroy()
and every skeleton's destroy leaked an attached, host-wide link). BPF_LINK_DETACH and the removal
of the root cgroup detach it (files gone, cgroup_id 0) and leave it to its fds and pins.

Each case runs with a mirror instance mounted (files in every cgroup of the subtree) and without
one (no files)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pytest
import rawbpf
from conftest import CGROUP2, link_desc
from test_cgroup_stat import make_tree

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

FILE = "cgstat_life"
FREE_WAIT_S = 30.0  # the last put frees the link from a workqueue


def alive(link_id: int) -> bool:
    return any(d.link_id == link_id for d in libbpf.cgroup_stat_links())


def eventually(pred: Callable[[], bool]) -> bool:
    """True once pred() holds, polled for at most FREE_WAIT_S."""
    deadline = time.monotonic() + FREE_WAIT_S
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gone(link_id: int) -> bool:
    """True once link_id is freed (waits for the workqueue, at most FREE_WAIT_S)."""
    return eventually(lambda: not alive(link_id))


def cgroup_id_of(link_id: int) -> int:
    fd = libbpf.link_fd_by_id(link_id)
    try:
        return link_desc(fd).cgroup_id
    finally:
        os.close(fd)


@pytest.fixture(params=["mirror", "no-mirror"])
def mirror(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A mounted mirror instance, or none at all; every cgroup stat link is detached afterwards."""
    path = mount_bpffs("cgroup_mirror") if request.param == "mirror" else None
    try:
        yield path
    finally:
        kernel_a1.detach_all()
        if path is not None:
            umount_bpffs(path)


def make_link(root: str) -> tuple[int, int]:
    """A cgroup stat link at root; returns (link fd, link id). The program fd is closed."""
    prog_fd, _log = rawbpf.prog_load_cgroup_stat(
        rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id), name=FILE
    )
    cgroup_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = rawbpf.link_create_cgroup_stat(prog_fd, cgroup_fd)
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)
    return fd, link_desc(fd).link_id


def files_expected(mirror: str | None, cg: str) -> int:
    return sum(1 for _ in os.walk(cg)) if mirror is not None else 0


def mirror_files(mirror: str | None) -> list[str]:
    """Every file under the mirror's cgroup/ (none without a mirror)."""
    if mirror is None:
        return []
    return [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(mirror, "cgroup")) for f in fs]


def test_closing_the_last_fd_detaches_it(mirror: str | None, cg: str) -> None:
    """Close the only fd (what bpf_link__destroy() does): the link is freed and its files go."""
    make_tree(cg, "a/b")
    fd, link_id = make_link(cg)
    assert len(mirror_files(mirror)) == files_expected(mirror, cg)
    os.close(fd)
    assert gone(link_id)
    assert mirror_files(mirror) == []


def test_a_pin_keeps_it_attached_with_its_files(mirror: str | None, cg: str, plain_fs: str) -> None:
    """Pin, close the fd: attached, every file there; unlink the pin: freed, files gone."""
    make_tree(cg, "a/b")
    fd, link_id = make_link(cg)
    pin = os.path.join(plain_fs, "link")
    libbpf.obj_pin(fd, pin)
    os.close(fd)
    assert alive(link_id) and cgroup_id_of(link_id) == os.stat(cg).st_ino
    handle = libbpf.link_fd_by_id(link_id)
    try:
        assert link_desc(handle).nr_files == files_expected(mirror, cg)
    finally:
        os.close(handle)
    assert len(mirror_files(mirror)) == files_expected(mirror, cg)
    os.unlink(pin)
    assert gone(link_id)
    # an unpinned link's release runs from a workqueue, after its id is freed
    assert eventually(lambda: mirror_files(mirror) == [])


def test_an_open_file_outlives_its_link(cg: str) -> None:
    """A file open when its link goes still reads (it holds its program), and reopening it through
    /proc/self/fd gets ENOENT: the inode keeps the link's memory, never the freed program."""
    path = mount_bpffs("cgroup_mirror")
    try:
        fd, link_id = make_link(cg)
        file = os.path.join(path, "cgroup", os.path.relpath(cg, CGROUP2), FILE)
        held = os.open(file, os.O_RDONLY)
        try:
            os.close(fd)
            assert gone(link_id) and not os.path.exists(file)
            assert os.pread(held, 4096, 0) == b""  # read, not refused (the program prints nothing)
            with pytest.raises(FileNotFoundError):
                os.open(f"/proc/self/fd/{held}", os.O_RDONLY)
        finally:
            os.close(held)
    finally:
        kernel_a1.detach_all()
        umount_bpffs(path)


def test_detach_then_the_last_handle_frees_it(mirror: str | None, cg: str, plain_fs: str) -> None:
    """BPF_LINK_DETACH: files gone, cgroup_id 0; the link lives while a pin does, then goes."""
    make_tree(cg, "a")
    fd, link_id = make_link(cg)
    libbpf.obj_pin(fd, os.path.join(plain_fs, "link"))
    libbpf.link_detach(fd)
    os.close(fd)
    assert alive(link_id) and cgroup_id_of(link_id) == 0
    if mirror is not None:
        assert os.listdir(os.path.join(mirror, "cgroup")) == []
    os.unlink(os.path.join(plain_fs, "link"))
    assert gone(link_id)


@pytest.mark.parametrize("held", ["nothing", "fd"])
def test_rmdir_of_the_root_detaches(mirror: str | None, cg: str, held: str) -> None:
    """rmdir of the link's root cgroup detaches it: with no handle it is freed, with an fd it
    lives on detached."""
    root = os.path.join(cg, "root")
    os.mkdir(root)
    fd, link_id = make_link(root)
    with contextlib.ExitStack() as stack:
        if held == "fd":
            stack.callback(os.close, fd)
        else:
            os.close(fd)
        os.rmdir(root)
        if held == "fd":
            assert alive(link_id) and link_desc(fd).cgroup_id == 0
    assert gone(link_id)


def test_unmount_of_the_mirror_detaches_nothing(cg: str) -> None:
    """umount of the mirror instance removes the files only: the link stays attached (its fd keeps
    it) and a new instance shows them again."""
    make_tree(cg, "a")
    first = mount_bpffs("cgroup_mirror")
    fd = -1
    try:
        fd, link_id = make_link(cg)
        umount_bpffs(first)
        assert alive(link_id) and cgroup_id_of(link_id) != 0
        second = mount_bpffs("cgroup_mirror")
        try:
            assert link_desc(fd).nr_files == 2
        finally:
            kernel_a1.detach_all()
            umount_bpffs(second)
    finally:
        if fd >= 0:
            os.close(fd)
        kernel_a1.detach_all()
        with contextlib.suppress(FileNotFoundError):
            umount_bpffs(first)


@pytest.mark.parametrize("how", ["detach", "takeover"])
def test_a_removed_file_reopened_from_an_o_path_fd_gets_enoent(cg: str, how: str) -> None:
    """A file removed while its link lives (BPF_LINK_DETACH, or another instance taking the mirror
    over) cannot be reopened through /proc/self/fd of an O_PATH fd: before v3's unhashed check it
    ran the live link's program."""
    paths = [mount_bpffs("cgroup_mirror")]
    fd = -1
    try:
        fd, _ = make_link(cg)
        file = os.path.join(paths[0], "cgroup", os.path.relpath(cg, CGROUP2), FILE)
        opath = os.open(file, os.O_PATH)
        try:
            if how == "detach":
                libbpf.link_detach(fd)
            else:
                paths.append(mount_bpffs("cgroup_mirror=takeover"))
            assert not os.path.exists(file)
            with pytest.raises(FileNotFoundError):
                os.open(f"/proc/self/fd/{opath}", os.O_RDONLY)
        finally:
            os.close(opath)
    finally:
        if fd >= 0:
            os.close(fd)
        kernel_a1.detach_all()
        for path in reversed(paths):
            umount_bpffs(path)
