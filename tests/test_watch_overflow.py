"""The watch set after lost events (issue 8, class 3): after an inotify overflow the daemon's
watches are exactly the tree's directories, each on the directory the path names now."""

from __future__ import annotations

import fcntl
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from helpers import Mirror, wait_for

QUEUE = "/proc/sys/fs/inotify/max_queued_events"
LOCK_DIR = "/run/bpffs-sync"  # where tests/v1_scratch.py keeps its host-wide test lock too
_MARK = re.compile(r"^inotify wd:[0-9a-f]+ ino:([0-9a-f]+)", re.MULTILINE)  # both in hex


@contextmanager
def small_inotify_queue(events: int = 16) -> Iterator[None]:
    """inotify instances made inside get an `events`-long queue; the host value comes back after.
    One such window at a time on the host (a lock file): two overlapping windows would save each
    other's small value and leave it behind for every later inotify user."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(os.path.join(LOCK_DIR, "test-inotify-queue.lock"), "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(QUEUE, encoding="ascii") as f:
            saved = f.read().strip()
        with open(QUEUE, "w", encoding="ascii") as f:
            f.write(str(events))
        try:
            yield
        finally:
            with open(QUEUE, "w", encoding="ascii") as f:
                f.write(saved)


def inotify_marks(pid: int) -> list[int]:
    """The inode of every inotify mark process `pid` holds, as the kernel lists them in fdinfo."""
    inodes: list[int] = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue
        inodes.extend(int(ino, 16) for ino in _MARK.findall(text))
    return inodes


def dir_inodes(root: str) -> list[int]:
    """The inode of every directory of the tree at root, root included."""
    return [os.lstat(dirpath).st_ino for dirpath, _dirs, _files in os.walk(root)]


def start_with_small_queue(mirror: Mirror) -> int:
    with small_inotify_queue():
        mirror.start(resync_interval=3600)  # no periodic pass: only events and overflows act
    assert mirror.proc is not None
    return mirror.proc.pid


def while_stopped(mirror: Mirror, *changes: str) -> None:
    """With the daemon stopped, overflow its queue (200 mkdirs in watched parents), then make the
    changes (`-path` rmdir, `+path` mkdir) while events are dropped; wait for the overflow's pass."""
    assert mirror.proc is not None
    passes = mirror.full_passes()
    mirror.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(200):
            os.mkdir(mirror.cg(f"o/c{i % 20}/f{passes}_{i}"))
        for change in changes:
            (os.rmdir if change[0] == "-" else os.mkdir)(mirror.cg(change[1:]))
    finally:
        mirror.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: mirror.full_passes() > passes, 30, "the overflow's full pass")
    wait_for(mirror.in_sync, 30, "verify to pass")


def make_parents(mirror: Mirror) -> None:
    for i in range(20):
        os.makedirs(mirror.cg(f"o/c{i}"))
    os.makedirs(mirror.cg("o/x/k"))
    wait_for(lambda: os.path.exists(mirror.stat_path("o/x/k")), 10, "parents mirrored")


def test_dir_remade_during_overflow_is_watched_again(mirror: Mirror) -> None:
    """o/x removed and re-made while events were lost: a mkdir inside it is seen by an event."""
    start_with_small_queue(mirror)
    make_parents(mirror)
    while_stopped(mirror, "-o/x/k", "-o/x", "+o/x", "+o/x/k")
    passes = mirror.full_passes()
    os.mkdir(mirror.cg("o/x/new"))
    os.mkdir(mirror.cg("o/x/k/deeper"))
    wait_for(lambda: os.path.exists(mirror.stat_path("o/x/new")), 15, "o/x/new mirrored by its event")
    wait_for(lambda: os.path.exists(mirror.stat_path("o/x/k/deeper")), 15, "o/x/k/deeper mirrored")
    assert mirror.full_passes() == passes  # no full pass did it


def test_marks_equal_watches_after_churn_and_overflows(mirror: Mirror) -> None:
    """After churn and three overflows the kernel's marks are the tree's directories, one each,
    and the daemon's watch count is their number."""
    pid = start_with_small_queue(mirror)
    make_parents(mirror)
    os.makedirs(mirror.cg("o/gone/a/b"))
    while_stopped(mirror, "-o/x/k", "-o/x", "+o/x", "+o/x/k")
    while_stopped(mirror, "-o/gone/a/b", "-o/gone/a", "-o/gone", "+o/gone")
    for i in range(30):  # churn with events
        os.mkdir(mirror.cg(f"o/x/k/t{i}"))
    for i in range(30):
        os.rmdir(mirror.cg(f"o/x/k/t{i}"))
    while_stopped(mirror, "-o/x/k", "+o/x/k", "+o/x/k/again")
    want = sorted(dir_inodes(mirror.cgroup_root))
    wait_for(lambda: sorted(inotify_marks(pid)) == want, 15, "the marks to be the tree's directories")
    wait_for(lambda: mirror.status()["daemon"]["watches"] == len(want), 15,  # type: ignore[index]
             "the daemon's watch count")
    assert sorted(inotify_marks(pid)) == want
