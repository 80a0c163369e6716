"""inotify on the cgroup tree (our own binding, mirror/inotify.py), as a hint source.

Hints are relative cgroup paths; None asks for a full resync. Events only say *where* to look:
the reconciler re-reads both trees. cgroupfs facts this module is shaped by (docs/architecture.md, section 2):
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
path; the tree of _Node (name, parent, wd, inode, children) and its index by wd are ours. A hint
is the directory an event was about (the parent's path and the event's name): never widened.

Supervision: both watchers read in one thread of their own, and that thread ends at its first
failure (the boundary both share: mirror/supervised.py). `failure` then says why, on_death is
called once, and the daemon replaces the watcher with a fresh one and runs a full resync.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress

from bpffs_sync import dirfd, log
from bpffs_sync.errors import CgroupGone, translate_oserror
from bpffs_sync.mirror import inotify
from bpffs_sync.mirror.inotify import Event, Inotify, Reader
from bpffs_sync.mirror.supervised import Supervised
from bpffs_sync.paths import RelPath

Hint = Callable[[RelPath | None], None]
Death = Callable[[str], None]
WatchDescriptor = int

_MASK = (inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO
         | inotify.IN_ONLYDIR | inotify.IN_DONT_FOLLOW)
_log = log.get(__name__)
_GONE = (errno.ENOENT, errno.ENOTDIR)


class _Node:
    """One watched directory: its name in its parent, the mark on it (wd) and the inode the mark
    is on. Memory is O(name): paths are built from the parent links when needed."""

    __slots__ = ("depth", "ino", "kids", "name", "parent", "text", "wd")

    def __init__(self, name: bytes, parent: _Node | None, wd: WatchDescriptor, ino: int) -> None:
        self.name = name
        self.text = os.fsdecode(name)  # shared by every hint below it: a RelPath costs a pointer per level
        self.parent = parent
        self.wd = wd
        self.ino = ino
        self.depth: int = 0 if parent is None else parent.depth + 1  # its RelPath's length
        self.kids: dict[bytes, _Node] | None = None  # made with the first child

    def chain(self) -> list[_Node]:
        """The nodes from the root's child down to this one (O(depth))."""
        out: list[_Node] = []
        node: _Node | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out

    def below(self) -> Iterator[_Node]:
        """This node and every node below it."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.kids:
                stack.extend(node.kids.values())


# A chain of cgroups can be far longer than PATH_MAX (4096). A directory is reached from the
# nearest ancestor whose fd is held (_Fds), else from the root, by openat() of at most _CHUNK bytes
# of names at a time: O(depth) work for any depth, and O(1) for a directory whose parent was just
# reached (a chain made one mkdir at a time, within one batch of events or one rescan). The fds
# are let go after each batch and each resync: a held fd would keep an administrator's umount
# EBUSY. inotify_add_watch is given /proc/self/fd/<parent>/<name>, which is never long, and
# IN_DONT_FOLLOW|IN_ONLYDIR hold for <name>.
_CHUNK = 3072
_HELD = 8  # directory fds held at most at a time


class _Fds:
    """A few open directory fds of watched nodes, most recently used last. Every fd is checked to
    be on the node's inode when opened; a node removed from the tree is evicted at once."""

    def __init__(self, root: bytes) -> None:
        self._root = root
        self._fds: OrderedDict[_Node, int] = OrderedDict()

    def get(self, node: _Node) -> int | None:
        """An fd of node's directory (owned by the cache), or None when that directory is gone
        (or another one is under its name now). Other errors (EMFILE, ...) raise OSError."""
        fd = self._fds.get(node)
        if fd is not None:
            self._fds.move_to_end(node)
            return fd
        names: list[bytes] = []
        base: _Node | None = node
        while base is not None and base not in self._fds:
            if base.parent is not None:
                names.append(base.name)
            base = base.parent
        names.reverse()
        try:
            fd = self._open(None if base is None else self._fds[base], names)
        except OSError as err:
            if err.errno in _GONE:
                return None
            raise
        try:
            if os.fstat(fd).st_ino != node.ino:
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        self._fds[node] = fd
        while len(self._fds) > _HELD:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _open(self, base_fd: int | None, names: list[bytes]) -> int:
        """openat() down names from base_fd (None: from the root's path), _CHUNK bytes at a time."""
        pieces: list[list[bytes]] = [[]]
        size = len(self._root) if base_fd is None else 0
        for name in names:
            if size + len(name) + 1 > _CHUNK and pieces[-1]:
                pieces.append([])
                size = 0
            pieces[-1].append(name)
            size += len(name) + 1
        fd: int | None = None
        try:
            for i, piece in enumerate(pieces):
                if i == 0 and base_fd is None:
                    path = b"/".join([self._root, *piece])
                    nxt = os.open(path, dirfd.O_DIR)
                elif piece:
                    nxt = os.open(b"/".join(piece), dirfd.O_DIR, dir_fd=base_fd if fd is None else fd)
                else:  # nothing to open below base_fd (names is empty)
                    assert base_fd is not None
                    nxt = os.dup(base_fd)
                if fd is not None:
                    os.close(fd)
                fd = nxt
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        assert fd is not None
        return fd

    def evict(self, node: _Node) -> None:
        fd = self._fds.pop(node, None)
        if fd is not None:
            os.close(fd)

    def clear(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])


class CgroupWatcher:
    """Watches every directory below root, down to dirfd.MAX_DEPTH levels (the walks' limit: a
    deeper cgroup is not mirrored, so it is not watched either); calls hint(rel) per change, rel
    being the directory that changed, and hint(None) on overflow.

    The watch set is a parent-linked tree of _Node (name, parent, wd, inode, children) with an
    index by wd: memory per directory is O(its name), and handling an event costs O(depth) at
    most (the hint's RelPath, and reaching the parent when its fd is not held).

    Every change of the watch set runs under one lock, from the reader thread (events) or the
    daemon's worker (resync), so the two never interleave."""

    def __init__(self, root: str, hint: Hint, on_death: Death | None = None) -> None:
        self.root = os.fsencode(os.path.abspath(root))
        self._hint = hint
        self._on_death = on_death
        self._lock = threading.RLock()
        self._top: _Node | None = None  # the root's node
        self._by_wd: dict[WatchDescriptor, _Node] = {}
        self._fds = _Fds(self.root)
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
            try:
                self._watch_below(self._watch_root())
            finally:
                self._fds.clear()

    def stop(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            reader, self._reader = self._reader, None
            self._top = None
            self._by_wd.clear()
            self._fds.clear()
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
        return len(self._by_wd)  # no lock: a reader must not wait for a batch of events

    # --- watches (callers hold self._lock)

    def _where(self, node: _Node, name: bytes = b"") -> str:
        """The directory's path, for messages only (never opened)."""
        return os.fsdecode(b"/".join([self.root, *(n.name for n in node.chain()), *([name] if name else [])]))

    @staticmethod
    def _rel(node: _Node) -> RelPath:
        return tuple(n.text for n in node.chain())

    def _watch_root(self) -> _Node:
        """The root watched, on its current inode (a new root drops every other watch)."""
        fd = self._fd
        assert fd is not None
        gone = CgroupGone("watch", os.fsdecode(self.root), errno.ENOENT, "the cgroup root is gone")
        try:
            before = os.lstat(self.root)
            if not stat.S_ISDIR(before.st_mode):
                raise gone
            top = self._top
            if top is not None and top.ino == before.st_ino:
                return top
            if top is not None:
                self._unwatch_tree(top)
            wd = fd.add_watch(self.root, _MASK)
            if os.lstat(self.root).st_ino != before.st_ino:
                raise gone  # swapped meanwhile: the next resync tries again
        except OSError as err:
            raise translate_oserror(err, "inotify_add_watch", os.fsdecode(self.root)) from err
        self._top = _Node(b"", None, wd, before.st_ino)
        self._by_wd[wd] = self._top
        return self._top

    def _watch_child(self, parent: _Node, pfd: int, name: bytes) -> _Node | None:
        """Make sure the directory `name` in parent (open as pfd), as it is now, is watched. None:
        it is not a directory (any more), lies too deep, or the watch could not be added."""
        fd = self._fd
        if fd is None or parent.depth + 1 >= dirfd.MAX_DEPTH:
            return None
        try:
            before = os.lstat(name, dir_fd=pfd)
        except OSError:
            return None
        if not stat.S_ISDIR(before.st_mode):
            return None
        cur = parent.kids.get(name) if parent.kids else None
        if cur is not None:
            if cur.ino == before.st_ino:
                return cur
            self._unwatch_tree(cur)  # re-made under the same name: the old mark is on a removed directory
        try:
            wd = fd.add_watch(b"/proc/self/fd/%d/%s" % (pfd, name), _MASK)
        except OSError as err:
            # Not a directory that just went (the watch limit, ...): one line until the next resync.
            if err.errno not in _GONE and not self._unwatched:
                where = self._where(parent, name)
                _log.warning("watch_failed", path=where, errno=err.errno, error=str(err))
                self._unwatched.append((os.fsencode(where), err))
            return None
        other = self._by_wd.get(wd)
        try:
            after = os.lstat(name, dir_fd=pfd).st_ino
        except OSError:
            after = None
        if after != before.st_ino:  # swapped while we watched: the parent's events bring it again
            if other is None:
                self._rm_watch(wd)
            return None
        if other is not None:  # the same directory under a new name (a v1 rename): move it, marks and all
            if other is parent or other in parent.chain():  # stale books: a full resync sorts them out
                self._hint(None)
                return None
            self._detach(other)
            other.name, other.text, other.parent, other.depth = name, os.fsdecode(name), parent, parent.depth + 1
            for node in other.below():
                if node.parent is not None:
                    node.depth = node.parent.depth + 1
            node = other
        else:
            node = _Node(name, parent, wd, before.st_ino)
            self._by_wd[wd] = node
        if parent.kids is None:
            parent.kids = {}
        parent.kids[name] = node
        return node

    def _detach(self, node: _Node) -> None:
        """Take node out of its parent's children (its subtree stays attached to it)."""
        parent = node.parent
        if parent is not None and parent.kids is not None and parent.kids.get(node.name) is node:
            del parent.kids[node.name]
            if not parent.kids:
                parent.kids = None

    def _children(self, fd: int) -> list[bytes]:
        try:
            with os.scandir(fd) as it:
                return [os.fsencode(e.name) for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []

    def _watch_below(self, top: _Node, seen: set[_Node] | None = None) -> None:
        """Watch every directory below the watched top, each before its own rescan (so a child
        made meanwhile is seen either by the rescan or by an event); seen gets every node watched."""
        if seen is not None:
            seen.add(top)
        stack = [top]
        while stack:
            node = stack.pop()
            if node.depth + 1 >= dirfd.MAX_DEPTH:
                continue
            fd = self._fds.get(node)
            if fd is None:
                continue
            for name in self._children(fd):
                child = self._watch_child(node, fd, name)
                if child is not None:
                    if seen is not None:
                        seen.add(child)
                    stack.append(child)

    def _rm_watch(self, wd: WatchDescriptor) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            fd.rm_watch(wd)
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: the mark is gone already (IN_IGNORED)
                raise

    def _unwatch_tree(self, top: _Node) -> None:
        """Forget top and every watched directory below it, marks included (inotify_rm_watch:
        cgroupfs never drops them by itself). Costs the subtree, not the whole watch set."""
        self._detach(top)
        if top is self._top:
            self._top = None
        for node in list(top.below()):
            self._fds.evict(node)
            if self._by_wd.get(node.wd) is node:
                del self._by_wd[node.wd]
                self._rm_watch(node.wd)
        top.kids = None

    def resync(self) -> None:
        """Make the watch set exactly the tree's directories as they are now: each watched on its
        current inode, and no other mark left. Raises CgroupGone when the root is gone, and
        SyncError when a directory could not be watched (after doing all the rest)."""
        with self._lock:
            if self._fd is None:
                return
            self._unwatched.clear()
            try:
                try:
                    top = self._watch_root()
                except CgroupGone:
                    for node in list(self._by_wd.values()):
                        self._unwatch_tree(node)
                    raise
                seen: set[_Node] = set()
                self._watch_below(top, seen)
                stale = [n for n in self._by_wd.values() if n not in seen]
                for node in stale:
                    self._unwatch_tree(node)
            finally:
                self._fds.clear()
            if stale:
                _log.info("watches_pruned", root=os.fsdecode(self.root), pruned=len(stale))
            if self._unwatched:  # one error for the daemon's boundary: logged, backed off, retried
                path, err = self._unwatched[0]
                raise translate_oserror(err, "inotify_add_watch", os.fsdecode(path)) from err

    # --- events (called from the reader thread)

    def _on_events(self, events: list[Event]) -> None:
        try:
            for event in events:
                if event.overflow:
                    self.on_queue_overflow()
                elif event.mask & inotify.IN_IGNORED:
                    self.on_watch_deleted(event.wd)
                else:
                    self.on_event(event)
        finally:
            with self._lock:  # no fd held between batches: it would keep an administrator's umount EBUSY
                self._fds.clear()

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
            parent = self._by_wd.get(event.wd)
            if parent is None or self._fd is None:
                return
            if event.mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
                pfd = self._fds.get(parent)
                if pfd is None:
                    return  # the parent is gone too: its own parent's IN_DELETE drops it
                known = parent.kids.get(event.name) if parent.kids else None
                child = self._watch_child(parent, pfd, event.name)
                if child is not None and child is not known:  # a known one was rescanned when first watched
                    self._watch_below(child)
            elif event.mask & (inotify.IN_DELETE | inotify.IN_MOVED_FROM):
                gone = parent.kids.get(event.name) if parent.kids else None
                if gone is not None:
                    self._unwatch_tree(gone)
            else:
                return
            rel = (*self._rel(parent), os.fsdecode(event.name))  # the directory that changed: never widened
        self._hint(rel)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        with self._lock:
            node = self._by_wd.pop(wd, None)
            if node is not None:
                self._detach(node)
                self._fds.evict(node)
                for below in list(node.below()):
                    if below is not node and self._by_wd.get(below.wd) is below:
                        del self._by_wd[below.wd]
                        self._fds.evict(below)
                        self._rm_watch(below.wd)
                if node is self._top:
                    self._top = None

    def on_queue_overflow(self) -> None:
        self.overflows += 1
        _log.warning("inotify_overflow", root=os.fsdecode(self.root), overflows=self.overflows)
        self._hint(None)


class MountWatcher(Supervised):
    """Calls hint() whenever this mount namespace's mount table changes: /proc/self/mountinfo
    polls with POLLPRI|POLLERR then (proc_pid_mountinfo(5)); reading it again re-arms the poll.
    Cheap: a thread asleep in poll(2), so a v1 hierarchy mounted or unmounted is seen at once.

    The thread's first failure (an exception from hint(), the file closed under it) ends it;
    `failure` says why and on_death(reason) is called once, for a supervisor to start a new one."""

    def __init__(self, hint: Callable[[], None], path: str = "/proc/self/mountinfo",
                 on_death: Death | None = None, check_every: float = 0.25) -> None:
        super().__init__(on_death, "the mountinfo thread ended")
        self._hint = hint
        self._path = path
        self._check_ms = round(check_every * 1e3)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mountinfo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _started(self) -> bool:
        return self._thread is not None  # a start() that raised counts: the supervisor tries again

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
                    if closed_under_us:  # closed between poll and read: the same death as POLLNVAL
                        raise OSError(errno.EBADF, f"the mountinfo fd {fd} was closed under its reader") from err
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
