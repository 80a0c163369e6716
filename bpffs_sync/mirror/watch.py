"""inotify on the cgroup tree, through watchdog's inotify layer (InotifyFD), as a hint source.

Hints are relative cgroup paths; None asks for a full resync. Events only say *where* to look:
the reconciler re-reads both trees. cgroupfs facts this module is shaped by (DESIGN.md §3):
- watches are per directory, so a new directory is watched and *then* rescanned for children
  made before the watch existed (mkdir -p races);
- IN_DELETE_SELF / IN_IGNORED never arrive on cgroupfs, so a child's watch is dropped when the
  parent reports IN_DELETE; otherwise every removed cgroup would leak a watch (and its inode);
- IN_Q_OVERFLOW means events were lost: ask for a full resync, and resync the watches too.

We use watchdog's InotifyFD rather than its recursive emitter because the emitter relies on
IN_IGNORED for clean-up and does not tell its user about an overflow.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)

from bpffs_sync import log
from bpffs_sync.paths import RelPath

Hint = Callable[[RelPath | None], None]

_MASK = Mask(
    InotifyConstants.IN_CREATE
    | InotifyConstants.IN_DELETE
    | InotifyConstants.IN_MOVED_FROM
    | InotifyConstants.IN_MOVED_TO
    | InotifyConstants.IN_ONLYDIR
    | InotifyConstants.IN_DONT_FOLLOW
)
_log = log.get(__name__)


class CgroupWatcher:
    """Watches every directory below root; calls hint(rel) per change and hint(None) on overflow."""

    def __init__(self, root: str, hint: Hint) -> None:
        self.root = os.fsencode(os.path.abspath(root))
        self._hint = hint
        self._lock = threading.Lock()
        self._wd_by_path: dict[bytes, WatchDescriptor] = {}
        self._path_by_wd: dict[WatchDescriptor, bytes] = {}
        self._fd: InotifyFD | None = None
        self._id = CallbackId(id(self))

    # --- lifecycle

    def start(self) -> None:
        self._fd = InotifyFD()
        self._fd.start()
        self._watch_tree(self.root)

    def stop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fd.stop()
            fd.join(timeout=5)

    @property
    def watch_count(self) -> int:
        with self._lock:
            return len(self._wd_by_path)

    # --- watches

    def _rel(self, path: bytes) -> RelPath:
        rel = os.fsdecode(os.path.relpath(path, self.root))
        return () if rel == "." else tuple(rel.split("/"))

    def _watch_one(self, path: bytes) -> bool:
        fd = self._fd
        if fd is None:
            return False
        try:
            wd = fd.add_callback(path, _MASK, self, self._id)
        except OSError as err:
            if path == self.root:
                raise
            _log.debug("watch_failed", path=os.fsdecode(path), errno=err.errno)
            return False
        with self._lock:
            old = self._path_by_wd.get(wd)
            if old is not None and old != path:
                self._wd_by_path.pop(old, None)
            self._wd_by_path[path] = wd
            self._path_by_wd[wd] = path
        return True

    def _watch_tree(self, top: bytes) -> None:
        """Watch top, then rescan it (and below) for directories made before the watch."""
        stack = [top]
        while stack:
            path = stack.pop()
            if not self._watch_one(path):
                continue
            try:
                with os.scandir(path) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except OSError:
                continue

    def _unwatch_tree(self, top: bytes) -> None:
        prefix = top + b"/"
        with self._lock:
            gone = [(p, wd) for p, wd in self._wd_by_path.items() if p == top or p.startswith(prefix)]
            for p, wd in gone:
                del self._wd_by_path[p]
                self._path_by_wd.pop(wd, None)
        fd = self._fd
        if fd is not None and gone:
            fd.remove_callbacks([(wd, self._id) for _, wd in gone])

    def resync(self) -> None:
        """Bring the watch set in line with the tree (after an overflow, or periodically)."""
        with self._lock:
            watched = set(self._wd_by_path)
        present: set[bytes] = set()
        for dirpath, _dirs, _files in os.walk(self.root):
            present.add(os.fsencode(dirpath))
        for path in sorted(watched - present, key=len, reverse=True):
            self._unwatch_tree(path)
        for path in sorted(present - watched, key=len):
            self._watch_tree(path)

    # --- watchdog's WatchCallback protocol (called from the InotifyFD thread)

    def on_event(self, event: InotifyEvent) -> None:
        if not event.mask & InotifyConstants.IN_ISDIR or not event.name:
            return
        with self._lock:
            parent = self._path_by_wd.get(event.wd)
        if parent is None:
            return
        child = parent + b"/" + event.name
        if event.is_create or event.is_moved_to:
            self._watch_tree(child)
        elif event.is_delete or event.is_moved_from:
            self._unwatch_tree(child)
        else:
            return
        self._hint(self._rel(child))

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        with self._lock:
            path = self._path_by_wd.pop(wd, None)
            if path is not None and self._wd_by_path.get(path) == wd:
                del self._wd_by_path[path]

    def on_queue_overflow(self) -> None:
        _log.warning("inotify_overflow", root=os.fsdecode(self.root))
        self._hint(None)


class MountWatcher:
    """Calls hint() whenever this mount namespace's mount table changes: /proc/self/mountinfo
    polls with POLLPRI|POLLERR then (proc_pid_mountinfo(5)); reading it again re-arms the poll.
    Cheap: a thread asleep in poll(2), so a v1 hierarchy mounted or unmounted is seen at once."""

    def __init__(self, hint: Callable[[], None], path: str = "/proc/self/mountinfo") -> None:
        self._hint = hint
        self._path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mountinfo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with open(self._path, "rb") as f:
            f.read()
            poller = select.poll()
            poller.register(f.fileno(), select.POLLPRI | select.POLLERR)
            while not self._stop.is_set():
                if not poller.poll(200):
                    continue
                f.seek(0)
                f.read()
                _log.debug("mounts_changed")
                self._hint()
