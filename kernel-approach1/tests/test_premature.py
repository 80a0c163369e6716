"""A mirror entry appears only for a cgroup whose directory is already visible: a mkdir that fails
after the cgroup was created (every slab allocation of the mkdir failed in turn) must not make an
entry appear even briefly in the mirror, which an inotify watch on the parent's mirror directory
would see."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

import pytest
from test_cgroup_stat import NAME, mirror_of
from test_rollback import MAX_NTH, failslab, inject  # noqa: F401 - the failslab fixture

from bpffs_sync.backends import kernel_a1

_libc = ctypes.CDLL(None, use_errno=True)
IN_NONBLOCK = 0o4000
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("<iIII")


class Inotify:
    """A non-blocking inotify watch on one directory."""

    def __init__(self, path: str, mask: int) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch", path)

    def names(self) -> list[tuple[int, str]]:
        """(mask, name) of every event queued so far."""
        found: list[tuple[int, str]] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            off = 0
            while off < len(buf):
                _wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
                raw = buf[off + _EVENT.size : off + _EVENT.size + length]
                found.append((mask, os.fsdecode(raw.rstrip(b"\0"))))
                off += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def watch_parent(stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> Iterator[Inotify]:
    """cg linked (so its mirror directory exists) and watched for entries created or deleted."""
    link_fds.append(stat.attach(cg))
    watch = Inotify(mirror_of(mirror_fs, cg), IN_CREATE | IN_DELETE)
    try:
        yield watch
    finally:
        watch.close()


@pytest.mark.usefixtures("failslab")
def test_failed_mkdir_never_shows_in_the_mirror(watch_parent: Inotify, mirror_fs: str, cg: str) -> None:
    """Each mkdir failed by an injected allocation failure leaves no create/delete event in the mirror."""
    target = os.path.join(cg, "job.scope")
    failed = 0
    for nth in range(1, MAX_NTH):
        _, err, injected = inject(nth, lambda: os.mkdir(target))
        events = watch_parent.names()
        if err is not None:
            failed += 1
            assert events == [], f"nth={nth}: {err!r} but the mirror saw {events}"
            continue
        if not injected:  # the clean mkdir: mirrored, and only now
            assert events == [(IN_CREATE | IN_ISDIR, "job.scope")]
            assert os.path.isfile(os.path.join(mirror_of(mirror_fs, target), NAME))
        os.rmdir(target)
        watch_parent.names()
        if not injected:
            break
    else:
        pytest.fail(f"mkdir still hit a fault point after {MAX_NTH} allocations")
    assert failed > 0
