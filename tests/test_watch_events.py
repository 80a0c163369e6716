"""CgroupWatcher's own error boundary (issue 8, classes 3 and 6), in process on a real cgroup
subtree: a failure while handling an event does not end the event thread, and a directory that
could not be watched makes resync() fail loudly instead of leaving it unwatched in silence.
Only the failure is injected."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Hints, wait_for

from bpffs_sync.errors import SyncError
from bpffs_sync.mirror.inotify import Inotify
from bpffs_sync.mirror.watch import CgroupWatcher


@pytest.fixture
def watched(cgroup_root: str) -> Iterator[tuple[CgroupWatcher, Hints]]:
    hints = Hints()
    watcher = CgroupWatcher(cgroup_root, hints)
    watcher.start()
    try:
        yield watcher, hints
    finally:
        watcher.stop()


def test_failed_event_handling_keeps_the_event_thread(watched: tuple[CgroupWatcher, Hints], cgroup_root: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while handling one event asks for a full resync; later events still arrive."""
    _, hints = watched
    real = CgroupWatcher._watch_below
    calls = [0]

    def fails_once(self: CgroupWatcher, top: Any, seen: Any = None) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("injected")
        real(self, top, seen)

    monkeypatch.setattr(CgroupWatcher, "_watch_below", fails_once)
    os.mkdir(os.path.join(cgroup_root, "a"))
    wait_for(lambda: None in hints.seen, 10, "a full-resync request")
    os.mkdir(os.path.join(cgroup_root, "b"))
    wait_for(lambda: ("b",) in hints.seen, 10, "the next event")


def test_resync_fails_when_a_directory_cannot_be_watched(watched: tuple[CgroupWatcher, Hints], cgroup_root: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """inotify_add_watch failing (here ENOSPC, the watch limit) makes resync() raise; once it
    works again, a resync watches the directory."""
    watcher, _ = watched
    real = Inotify.add_watch
    def limit(self: Inotify, path: bytes | str, mask: int) -> int:
        if os.fsencode(path).endswith(b"/x"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, mask)

    monkeypatch.setattr(Inotify, "add_watch", limit)
    os.mkdir(os.path.join(cgroup_root, "x"))
    with pytest.raises(SyncError) as err:
        watcher.resync()
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    watcher.resync()
    assert watcher.watch_count == 2  # the root and x


def test_hint_is_the_directory_that_changed(watched: tuple[CgroupWatcher, Hints], cgroup_root: str) -> None:
    """A mkdir below a stat-named cgroup hints exactly that directory: the watcher never widens a
    scope (to the stat-named ancestor or anywhere else)."""
    os.makedirs(os.path.join(cgroup_root, "d", "hist_oncpu"))
    watcher, hints = watched
    wait_for(lambda: watcher.watch_count == 3, 10, "d and d/hist_oncpu watched")
    before = len(hints.seen)
    os.mkdir(os.path.join(cgroup_root, "d", "hist_oncpu", "x"))
    wait_for(lambda: ("d", "hist_oncpu", "x") in hints.seen, 10, "the mkdir hinted")
    late = {("d",), ("d", "hist_oncpu")}  # the makedirs' own hints may still be arriving
    assert [h for h in hints.seen[before:] if h not in late] == [("d", "hist_oncpu", "x")]
