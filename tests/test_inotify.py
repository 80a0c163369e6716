"""The inotify binding (mirror/inotify.py) against the kernel: a private tmpfs directory (renames,
any name bytes) and a private cgroup subtree. One behaviour per test; nothing is mocked."""

from __future__ import annotations

import errno
import os
import select
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest
from helpers import wait_for
from test_watch_overflow import small_inotify_queue

from bpffs_sync.mirror import inotify
from bpffs_sync.mirror.inotify import Event, Inotify, Reader, parse

WATCH = inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO


@pytest.fixture
def shm_dir() -> Iterator[str]:
    """A private directory on a tmpfs (/dev/shm), removed afterwards."""
    path = tempfile.mkdtemp(prefix="bpffs-sync-inotify-", dir="/dev/shm")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ino() -> Iterator[Inotify]:
    with Inotify() as instance:
        yield instance


def drain(ino: Inotify, want: Callable[[list[Event]], bool], timeout: float = 5.0) -> list[Event]:
    """Read events until want(everything read) holds (or the timeout: the caller's assert says what is missing)."""
    got: list[Event] = []
    poller = select.poll()
    poller.register(ino.fileno(), select.POLLIN)
    while not want(got) and poller.poll(round(timeout * 1e3)):
        got.extend(ino.read())
    return got


def test_create_delete_and_isdir_are_parsed(ino: Inotify, shm_dir: str) -> None:
    """mkdir, a file create, rmdir: wd, mask (IN_ISDIR only on the directory) and name as the kernel sent them."""
    wd = ino.add_watch(shm_dir, WATCH)
    os.mkdir(os.path.join(shm_dir, "d"))
    open(os.path.join(shm_dir, "f"), "wb").close()
    os.rmdir(os.path.join(shm_dir, "d"))
    got = drain(ino, lambda evs: len(evs) >= 3)
    assert [(e.wd, e.mask, e.name) for e in got] == [
        (wd, inotify.IN_CREATE | inotify.IN_ISDIR, b"d"),
        (wd, inotify.IN_CREATE, b"f"),
        (wd, inotify.IN_DELETE | inotify.IN_ISDIR, b"d"),
    ]
    assert got[0].is_dir and not got[1].is_dir and not any(e.overflow for e in got)


def test_move_pairs_by_cookie(ino: Inotify, shm_dir: str) -> None:
    """A rename within the watched directory: IN_MOVED_FROM then IN_MOVED_TO, one non-zero cookie."""
    os.mkdir(os.path.join(shm_dir, "old"))
    wd = ino.add_watch(shm_dir, WATCH)
    os.rename(os.path.join(shm_dir, "old"), os.path.join(shm_dir, "new"))
    frm, to = drain(ino, lambda evs: len(evs) >= 2)
    assert (frm.wd, frm.mask, frm.name) == (wd, inotify.IN_MOVED_FROM | inotify.IN_ISDIR, b"old")
    assert (to.wd, to.mask, to.name) == (wd, inotify.IN_MOVED_TO | inotify.IN_ISDIR, b"new")
    assert frm.cookie == to.cookie != 0


def test_names_are_bytes_verbatim(ino: Inotify, shm_dir: str) -> None:
    """A non-UTF-8 name and a 255-byte name come back byte for byte (one read holds both)."""
    odd, longest = b"caf\xe9\xff\x1b[2J", b"n" * inotify.NAME_MAX
    ino.add_watch(shm_dir, WATCH)
    os.mkdir(os.path.join(os.fsencode(shm_dir), odd))
    os.mkdir(os.path.join(os.fsencode(shm_dir), longest))
    got = drain(ino, lambda evs: len(evs) >= 2)
    assert [e.name for e in got] == [odd, longest]


def test_cgroup_mkdir_with_a_255_byte_name(ino: Inotify, cgroup_root: str) -> None:
    """On cgroupfs: a child cgroup with the longest name is one IN_CREATE|IN_ISDIR event, name intact."""
    wd = ino.add_watch(cgroup_root, WATCH | inotify.IN_ONLYDIR)
    name = "c" * inotify.NAME_MAX
    os.mkdir(os.path.join(cgroup_root, name))
    try:
        got = drain(ino, bool)
        assert [(e.wd, e.mask, e.name) for e in got] == [(wd, inotify.IN_CREATE | inotify.IN_ISDIR, name.encode())]
    finally:
        os.rmdir(os.path.join(cgroup_root, name))


def test_overflow_is_reported(shm_dir: str) -> None:
    """More events than fs.inotify.max_queued_events: the queue ends with one IN_Q_OVERFLOW, wd -1."""
    with small_inotify_queue(16), Inotify() as ino:
        ino.add_watch(shm_dir, WATCH)
        for i in range(40):
            os.mkdir(os.path.join(shm_dir, f"d{i}"))
        got = drain(ino, lambda evs: any(e.overflow for e in evs))
    assert got[-1].overflow and got[-1].wd == -1 and got[-1].name == b""
    assert sum(e.overflow for e in got) == 1
    assert len(got) <= 17  # 16 queued, then the overflow event


def test_rm_watch_ends_events_and_a_second_rm_is_einval(ino: Inotify, shm_dir: str) -> None:
    """After rm_watch: IN_IGNORED for that wd, no more events from the directory; removing it again raises EINVAL."""
    wd = ino.add_watch(shm_dir, WATCH)
    ino.rm_watch(wd)
    got = drain(ino, bool)
    assert [(e.wd, e.mask) for e in got] == [(wd, inotify.IN_IGNORED)]
    os.mkdir(os.path.join(shm_dir, "after"))
    assert drain(ino, bool, timeout=0.3) == []
    with pytest.raises(OSError) as err:
        ino.rm_watch(wd)
    assert err.value.errno == errno.EINVAL


def test_the_same_inode_gets_the_same_wd(ino: Inotify, shm_dir: str) -> None:
    """A wd names an inode: the directory watched again (by another path) returns the same wd."""
    wd = ino.add_watch(shm_dir, WATCH)
    assert ino.add_watch(os.path.join(shm_dir, "."), WATCH) == wd


def test_errors_raise_oserror_with_errno(ino: Inotify, shm_dir: str) -> None:
    """A missing path is ENOENT and a file under IN_ONLYDIR ENOTDIR, each naming the path; a closed instance EBADF."""
    missing = os.path.join(shm_dir, "missing")
    with pytest.raises(OSError) as err:
        ino.add_watch(missing, WATCH)
    assert (err.value.errno, err.value.filename) == (errno.ENOENT, missing)
    open(os.path.join(shm_dir, "f"), "wb").close()
    with pytest.raises(OSError) as err:
        ino.add_watch(os.path.join(shm_dir, "f"), WATCH | inotify.IN_ONLYDIR)
    assert err.value.errno == errno.ENOTDIR
    ino.close()
    with pytest.raises(OSError) as err:
        ino.add_watch(shm_dir, WATCH)
    assert err.value.errno == errno.EBADF


def test_eacces_is_an_error_not_a_wd(shm_dir: str) -> None:
    """An unprivileged user watching a directory it may not read: OSError EACCES (watchdog returned wd -1)."""
    os.chmod(shm_dir, 0o700)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report the errno (or the wd) and leave at once
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            try:
                out = f"wd {Inotify().add_watch(shm_dir, inotify.IN_CREATE)}"
            except OSError as err:
                out = f"errno {err.errno}"
            os.write(wr, out.encode())
        finally:
            os._exit(0)
    os.close(wr)
    try:
        out = os.read(rd, 100).decode()
    finally:
        os.close(rd)
        os.waitpid(pid, 0)
    assert out == f"errno {errno.EACCES}"


def test_parse_refuses_a_truncated_buffer() -> None:
    """A buffer that is not a whole run of events (a header cut short, a name past the end) is ValueError."""
    whole = struct.pack("=iIII", 1, inotify.IN_CREATE, 0, 16) + b"name".ljust(16, b"\0")
    assert parse(whole) == [Event(1, inotify.IN_CREATE, 0, b"name")]
    for cut in (whole[:10], whole[:-1]):
        with pytest.raises(ValueError):
            parse(cut)


# --- the reader thread's boundary


class Deaths:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, reason: str) -> None:
        with self._lock:
            self.reasons.append(reason)


def test_reader_hands_batches_to_its_handler(ino: Inotify, shm_dir: str) -> None:
    """Events reach the handler from the reader thread; stop() ends it with no failure."""
    seen: list[bytes] = []
    ino.add_watch(shm_dir, WATCH)
    reader = Reader(ino, lambda evs: seen.extend(e.name for e in evs), "test-reader")
    reader.start()
    os.mkdir(os.path.join(shm_dir, "x"))
    wait_for(lambda: seen == [b"x"], 5, "the event handled")
    reader.stop()
    assert reader.failure is None


def test_reader_dies_once_when_its_handler_raises(ino: Inotify, shm_dir: str) -> None:
    """An exception in the handler ends the reader, kept as its failure and reported once through on_death."""
    deaths = Deaths()

    def handle(events: list[Event]) -> None:
        raise RuntimeError("injected")

    ino.add_watch(shm_dir, WATCH)
    reader = Reader(ino, handle, "test-reader", on_death=deaths)
    reader.start()
    os.mkdir(os.path.join(shm_dir, "a"))
    wait_for(lambda: bool(deaths.reasons), 5, "the reader's death reported")
    os.mkdir(os.path.join(shm_dir, "b"))
    wait_for(lambda: reader.failure is not None, 5, "the failure kept")
    assert deaths.reasons == ["RuntimeError: injected"]
    assert reader.failure == "RuntimeError: injected"
    assert not reader.lost_fd  # the fd is fine: its owner closes it
    reader.stop()


def test_reader_dies_when_its_fd_is_closed_under_it(ino: Inotify, shm_dir: str) -> None:
    """The instance's fd closed by another thread: the reader notices (EBADF, at its next check) and says so."""
    deaths = Deaths()
    ino.add_watch(shm_dir, WATCH)
    reader = Reader(ino, lambda evs: None, "test-reader", on_death=deaths)
    reader.start()
    os.close(ino.fileno())
    wait_for(lambda: bool(deaths.reasons), 10, "the closed fd noticed")
    assert "closed" in deaths.reasons[0] and reader.error is not None
    assert isinstance(reader.error, OSError) and reader.error.errno == errno.EBADF
    assert reader.lost_fd  # its owner must not close the number again
    reader.stop()
    ino._fd = None  # closed above, by hand
