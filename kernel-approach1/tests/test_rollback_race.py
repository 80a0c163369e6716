"""Link create that fails late, while its early files are being opened and its program's last fd is
closed: an open() racing the rollback must get its own program reference or ENOENT, never one on a
freed program. Every slab allocation of the link create fails in turn (failslab), one thread spins
open()+read() on the first file the link makes, another closes the program fd. On the plain kernel
this checks that nothing crashes and nothing is left; the debug kernel's KASAN checks the memory
(run-guest fails the run on any report)."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import rawbpf
from test_cgroup_stat import make_tree, mirror_of
from test_rollback import failslab, inject  # noqa: F401 - the failslab fixture

from bpffs_sync.backends import kernel_a1

MAX_NTH = 400
FILE = "cgstat_race"


def load() -> int:
    fd, _log = rawbpf.prog_load_cgroup_stat(rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id), name=FILE)
    return fd


class Opener(threading.Thread):
    """Spins open()+read() on path; keeps any error other than ENOENT/ENODEV."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.unexpected: list[BaseException] = []

    def _tolerate(self, err: OSError) -> None:
        if err.errno not in (errno.ENOENT, errno.ENODEV):
            self.unexpected.append(err)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as err:
                self._tolerate(err)
                continue
            try:
                os.read(fd, 4096)
            except OSError as err:
                self._tolerate(err)
            finally:
                os.close(fd)


def create_while_closing(nth: int, cgroup_fd: int, delay: float) -> tuple[int | None, BaseException | None, bool]:
    """Link create of a fresh program failing at fault point nth, its fd closed `delay` s after the start."""
    prog_fd = load()
    closer = threading.Timer(delay, os.close, (prog_fd,))
    closer.start()
    try:
        return inject(nth, lambda: rawbpf.link_create_cgroup_stat(prog_fd, cgroup_fd))
    finally:
        closer.join()


@pytest.mark.usefixtures("failslab")
def test_open_racing_a_failed_link_create(mirror_fs: str, cg: str) -> None:
    """Opens racing each failed link create end in success or ENOENT/ENODEV, and leave no file behind."""
    make_tree(cg, "a/b", "c", "d/e/f")
    first = os.path.join(mirror_of(mirror_fs, cg), FILE)
    cgroup_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    spinner = Opener(first)
    spinner.start()
    failures = 0
    nth, delay = 1, 0.0005
    try:
        while nth < MAX_NTH:
            link_fd, err, injected = create_while_closing(nth, cgroup_fd, delay)
            if isinstance(err, OSError) and err.errno in (errno.EBADF, errno.EINVAL):
                delay = min(delay * 2, 0.1)  # fd closed (maybe reused) before link create took it: later
                continue
            if link_fd is not None:
                os.close(link_fd)
                kernel_a1.detach_all()  # the files keep the link
            if err is not None:
                failures += 1
                assert not os.path.exists(first), f"nth={nth}: a file outlived the failed create"
            if not injected:
                break
            nth += 1
    finally:
        spinner.stop.set()
        spinner.join()
        os.close(cgroup_fd)
    assert spinner.unexpected == []
    assert failures > 0
