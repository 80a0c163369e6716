"""inotify on the cgroup tree (our own binding, mirror/inotify.py), as a hint source.

Hints are relative cgroup paths; None asks for a full resync. Events only say *where* to look:
the reconciler re-reads both trees. cgroupfs facts this module is shaped by (DESIGN.md §3):
- watches are per directory, so a new directory is watched and *then* rescanned for children
  made before the watch existed (mkdir -p races);
- IN_DELETE_SELF / IN_IGNORED never arrive on cgroupfs: a mark stays on a removed directory's
  inode (pinning it) until we remove it, so a child's watch is dropped when the parent reports
  IN_DELETE, and resync() removes every mark that is not on a directory of the tree now;
- IN_Q_OVERFLOW means events were lost: ask for a full resync, and resync the watches too.

A watch is valid only while the path still names *the same directory*: each one records the
inode it is on (checked by an lstat before and after inotify_add_watch, so a directory swapped
in between is never recorded), and resync() compares it with the inode the path names now. A
directory removed and re-made under the same name while events were lost is re-watched; the old
mark is removed. Invariant: the watches here are exactly this inotify instance's marks, one per
directory of the tree (a cgroup id is its directory's inode number, never reused).

The kernel returns the existing wd when an inode is watched again, so a wd names an inode, not a
path; the path -> (wd, inode) map below is ours.

Supervision: both watchers read in one thread of their own, and that thread ends at its first
failure (inotify.Reader's boundary; MountWatcher's own). `failure` then says why, on_death is
called once, and the daemon replaces the watcher with a fresh one and runs a full resync.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from bpffs_sync import dirfd, log
from bpffs_sync.errors import CgroupGone, SyncError, translate_oserror
from bpffs_sync.mirror import inotify
from bpffs_sync.mirror.inotify import Event, Inotify, Reader
from bpffs_sync.paths import RelPath

Hint = Callable[[RelPath | None], None]
Death = Callable[[str], None]
WatchDescriptor = int

_MASK = (inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO
         | inotify.IN_ONLYDIR | inotify.IN_DONT_FOLLOW)
_log = log.get(__name__)
_GONE = (errno.ENOENT, errno.ENOTDIR)


@dataclass(frozen=True, slots=True)
class _Watch:
    wd: WatchDescriptor
    ino: int  # the directory the mark is on


# A chain of cgroups can be longer than PATH_MAX (4096): such a directory is reached one name at a
# time from the root (no symlink followed) and named to the kernel as /proc/self/fd/<fd>, which
# inotify_add_watch, stat and scandir resolve to the directory itself.
_LONG = 3072


@contextmanager
def _reach(root: bytes, path: bytes) -> Iterator[tuple[bytes, bool]]:
    """(a path the kernel accepts for the directory at path below root, whether it is a
    /proc/self/fd proxy: root opened as given, the rest one name at a time)."""
    if len(path) < _LONG or not path.startswith(root + b"/"):
        yield path, False
        return
    try:
        rel = tuple(os.fsdecode(n) for n in path[len(root) + 1:].split(b"/"))
        fd = dirfd.open_rel(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), rel,
                            os.fsdecode(root), close_root=True)
    except (OSError, SyncError):
        yield path, False  # gone (or unreachable): the plain path fails the same way
        return
    try:
        yield f"/proc/self/fd/{fd}".encode(), True
    finally:
        os.close(fd)


def _dir_ino(root: bytes, path: bytes) -> int | None:
    """The inode of the directory at path (no symlink followed), or None."""
    try:
        with _reach(root, path) as (usable, proxy):
            st = os.stat(usable) if proxy else os.lstat(usable)
    except OSError:
        return None
    return st.st_ino if stat.S_ISDIR(st.st_mode) else None


class CgroupWatcher:
    """Watches every directory below root; calls hint(rel) per change and hint(None) on overflow.

    Every change of the watch set runs under one lock, from the inotify thread (events) or the
    daemon's worker (resync), so the two never interleave."""

    def __init__(self, root: str, hint: Hint, on_death: Death | None = None) -> None:
        self.root = os.fsencode(os.path.abspath(root))
        self._hint = hint
        self._on_death = on_death
        self._lock = threading.RLock()
        self._watches: dict[bytes, _Watch] = {}
        self._path_by_wd: dict[WatchDescriptor, bytes] = {}
        self._kids: dict[bytes, set[bytes]] = {}  # parent path -> its watched children's paths
        self._fd: Inotify | None = None
        self._reader: Reader | None = None
        self._unwatched: list[tuple[bytes, OSError]] = []  # the first directory that could not be watched
        self.overflows = 0  # IN_Q_OVERFLOW seen over the watcher's life

    # --- lifecycle

    def start(self) -> None:
        """A fresh inotify instance, its reader, then every directory watched (each before its
        rescan). Raises CgroupGone when the root is gone; the caller stop()s after a failure."""
        self._fd = Inotify()
        self._reader = Reader(self._fd, self._on_events, f"inotify:{os.fsdecode(os.path.basename(self.root))}",
                              on_death=self._died)
        self._reader.start()
        with self._lock:
            self._watch_root()
            self._watch_below(self.root)

    def stop(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            reader, self._reader = self._reader, None
            self._watches.clear()
            self._path_by_wd.clear()
            self._kids.clear()
        if reader is not None:
            reader.stop()
        if fd is None:
            return
        if reader is not None and reader.lost_fd:
            fd.detach()  # closed under the reader: the number may be another file's by now
            return
        with suppress(OSError):
            fd.close()  # every mark goes with the instance

    @property
    def failure(self) -> str | None:
        """Why this watcher no longer sees events (its reader died), or None."""
        reader = self._reader
        return None if reader is None else reader.failure

    @property
    def error(self) -> BaseException | None:
        reader = self._reader
        return None if reader is None else reader.error

    def _died(self, reason: str) -> None:
        if self._on_death is not None:
            self._on_death(reason)
        else:
            self._hint(None)

    @property
    def watch_count(self) -> int:
        with self._lock:
            return len(self._watches)

    # --- watches (callers hold self._lock)

    def _rel(self, path: bytes) -> RelPath:
        rel = os.fsdecode(os.path.relpath(path, self.root))
        return () if rel == "." else tuple(rel.split("/"))

    def _watch_one(self, path: bytes) -> bool:
        """Make sure path's directory, as it is now, is watched. False: it is not a directory
        (any more), or the watch could not be added."""
        fd = self._fd
        before = _dir_ino(self.root, path)
        if fd is None or before is None:
            return False
        cur = self._watches.get(path)
        if cur is not None:
            if cur.ino == before:
                return True
            self._forget(path)  # re-made under the same name: the old mark is on a removed directory
        try:
            with _reach(self.root, path) as (usable, proxy):  # a proxy is the directory's fd: nothing left to follow
                wd = fd.add_watch(usable, _MASK & ~inotify.IN_DONT_FOLLOW if proxy else _MASK)
        except OSError as err:
            if path == self.root:
                raise translate_oserror(err, "inotify_add_watch", os.fsdecode(path)) from err
            # Not a directory that just went (the watch limit, ...): one line until the next resync.
            if err.errno not in _GONE and not self._unwatched:
                _log.warning("watch_failed", path=os.fsdecode(path), errno=err.errno, error=str(err))
                self._unwatched.append((path, err))
            return False
        other = self._path_by_wd.get(wd)
        if _dir_ino(self.root, path) != before:  # swapped while we watched: the parent's events bring it again
            if other is None:
                self._rm_watch(wd)
            return False
        if other is not None and other != path:  # the same directory under a new name (a v1 rename)
            self._drop(other)
        self._put(path, _Watch(wd, before))
        return True

    def _put(self, path: bytes, watch: _Watch) -> None:
        self._watches[path] = watch
        self._path_by_wd[watch.wd] = path
        self._kids.setdefault(path.rpartition(b"/")[0], set()).add(path)

    def _drop(self, path: bytes) -> _Watch:
        """Drop path from the books (not its mark)."""
        watch = self._watches.pop(path)
        if self._path_by_wd.get(watch.wd) == path:
            del self._path_by_wd[watch.wd]
        parent = path.rpartition(b"/")[0]
        siblings = self._kids.get(parent)
        if siblings is not None:
            siblings.discard(path)
            if not siblings:
                del self._kids[parent]
        return watch

    def _watch_root(self) -> None:
        if not self._watch_one(self.root):
            raise CgroupGone("watch", os.fsdecode(self.root), errno.ENOENT, "the cgroup root is gone")

    def _children(self, path: bytes) -> list[bytes]:
        try:
            with _reach(self.root, path) as (usable, _proxy), os.scandir(usable) as it:
                return [path + b"/" + os.fsencode(e.name) for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []

    def _watch_below(self, top: bytes) -> set[bytes]:
        """Watch every directory below the watched top, each before its own rescan (so a child
        made meanwhile is seen either by the rescan or by an event). Returns what is watched."""
        seen = {top}
        stack = self._children(top)
        while stack:
            path = stack.pop()
            if self._watch_one(path):
                seen.add(path)
                stack.extend(self._children(path))
        return seen

    def _forget(self, path: bytes) -> None:
        """Remove the mark of one path (inotify_rm_watch: cgroupfs never drops it by itself)."""
        self._rm_watch(self._drop(path).wd)

    def _rm_watch(self, wd: WatchDescriptor) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            fd.rm_watch(wd)
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: the mark is gone already (IN_IGNORED)
                raise

    def _unwatch_tree(self, top: bytes) -> None:
        """Forget top and every watched directory below it (through the children index: a removal
        costs its subtree, not the whole watch set)."""
        gone, stack = [], [top]
        while stack:
            path = stack.pop()
            gone.append(path)
            stack.extend(self._kids.get(path, ()))
        for path in gone:
            if path in self._watches:
                self._forget(path)

    def resync(self) -> None:
        """Make the watch set exactly the tree's directories as they are now: each watched on its
        current inode, and no other mark left. Raises CgroupGone when the root is gone, and
        SyncError when a directory could not be watched (after doing all the rest)."""
        with self._lock:
            if self._fd is None:
                return
            self._unwatched.clear()
            try:
                self._watch_root()
            except CgroupGone:
                for path in list(self._watches):
                    self._forget(path)
                raise
            seen = self._watch_below(self.root)
            stale = [p for p in self._watches if p not in seen]
            for path in stale:
                self._forget(path)
            if stale:
                _log.info("watches_pruned", root=os.fsdecode(self.root), pruned=len(stale))
            if self._unwatched:  # one error for the daemon's boundary: logged, backed off, retried
                path, err = self._unwatched[0]
                raise translate_oserror(err, "inotify_add_watch", os.fsdecode(path)) from err

    # --- events (called from the reader thread)

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            if event.overflow:
                self.on_queue_overflow()
            elif event.mask & inotify.IN_IGNORED:
                self.on_watch_deleted(event.wd)
            else:
                self.on_event(event)

    def on_event(self, event: Event) -> None:
        """An error handling one event asks for a full resync (which heals whatever it left
        undone) and the reader carries on; what escapes this ends the reader (supervised)."""
        try:
            self._on_event(event)
        except Exception as err:
            _log.error("watch_event_failed", root=os.fsdecode(self.root), error=str(err), exc_info=True)
            self._hint(None)

    def _on_event(self, event: Event) -> None:
        if not event.is_dir or not event.name:
            return
        with self._lock:
            parent = self._path_by_wd.get(event.wd)
            if parent is None or self._fd is None:
                return
            child = parent + b"/" + event.name
            if event.mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
                if self._watch_one(child):
                    self._watch_below(child)
            elif event.mask & (inotify.IN_DELETE | inotify.IN_MOVED_FROM):
                self._unwatch_tree(child)
            else:
                return
        self._hint(self._rel(child))

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        with self._lock:
            path = self._path_by_wd.get(wd)
            if path is not None and (w := self._watches.get(path)) is not None and w.wd == wd:
                self._drop(path)

    def on_queue_overflow(self) -> None:
        self.overflows += 1
        _log.warning("inotify_overflow", root=os.fsdecode(self.root), overflows=self.overflows)
        self._hint(None)


class MountWatcher:
    """Calls hint() whenever this mount namespace's mount table changes: /proc/self/mountinfo
    polls with POLLPRI|POLLERR then (proc_pid_mountinfo(5)); reading it again re-arms the poll.
    Cheap: a thread asleep in poll(2), so a v1 hierarchy mounted or unmounted is seen at once.

    The thread's first failure (an exception from hint(), the file closed under it) ends it;
    `failure` says why and on_death(reason) is called once, for a supervisor to start a new one."""

    def __init__(self, hint: Callable[[], None], path: str = "/proc/self/mountinfo",
                 on_death: Death | None = None, check_every: float = 0.25) -> None:
        self._hint = hint
        self._path = path
        self._on_death = on_death
        self._check_ms = round(check_every * 1e3)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mountinfo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def failure(self) -> str | None:
        """Why the thread no longer watches the mount table, or None."""
        if self.error is not None:
            return inotify.describe(self.error)
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return "the mountinfo thread ended"
        return None

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # the boundary: kept, reported once, and the thread ends
            self.error = err
            if self._on_death is not None and not self._stop.is_set():
                with suppress(Exception):  # the supervisor's periodic check sees the failure anyway
                    self._on_death(inotify.describe(err))

    def _loop(self) -> None:
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        closed_under_us = False
        try:
            _drain(fd)
            st = os.fstat(fd)
            ident, checked = (st.st_dev, st.st_ino), time.monotonic()
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            while not self._stop.is_set():
                ready = dict(poller.poll(self._check_ms))
                flags = ready.get(fd, 0)
                if time.monotonic() - checked >= self._check_ms / 1e3:  # its number reused by another file
                    checked = time.monotonic()
                    try:
                        st = os.fstat(fd)
                        if (st.st_dev, st.st_ino) != ident:
                            flags |= select.POLLNVAL
                    except OSError:
                        flags |= select.POLLNVAL
                if flags & select.POLLNVAL:
                    closed_under_us = True
                    raise OSError(errno.EBADF, f"the mountinfo fd {fd} was closed under its reader")
                if not flags or self._stop.is_set():
                    continue
                try:
                    _drain(fd)
                except OSError as err:
                    closed_under_us = err.errno == errno.EBADF
                    raise
                _log.debug("mounts_changed")
                self._hint()
        finally:
            if not closed_under_us:  # else the number may be another file's by now: not ours to close
                os.close(fd)


def _drain(fd: int) -> None:
    """Read the file from its start to its end (what re-arms mountinfo's poll)."""
    os.lseek(fd, 0, os.SEEK_SET)
    while os.read(fd, 65536):
        pass
