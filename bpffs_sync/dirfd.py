"""Directory fds: every filesystem operation of the mirror is relative to an open directory, by one name.

The daemon runs as root beside a world-writable, sticky directory (the bpffs root) and below trees
that unprivileged users name and nest (delegated cgroups). So no path is ever resolved by the kernel
on our behalf:
- every open is `openat(parent_fd, name, O_NOFOLLOW | O_DIRECTORY)` of one component: a symlink is
  never followed (ELOOP), a file where a directory belongs is ENOTDIR;
- nothing depends on PATH_MAX: a cgroup chain longer than any path is reached one name at a time;
- what we adopt at a shared root (`<bpffs>/cgroup`, `<bpffs>/bpffs-sync`, ...) must be a directory
  owned by root, on the same filesystem, writable by nobody else (`owned_dir`); anything else is
  Tampered (exit 2 with one line) and left alone for a human to look at;
- below a root, no step crosses a mount point: `open_dir` (every directory entered) and `lstat_at`
  (every entry chmodded or removed by name) compare st_dev with the parent's and raise MountPoint
  for an entry on another filesystem (a tmpfs or another bpffs mounted there is somebody else's).
  Creating a name in a checked directory cannot reach another filesystem, so mkdir/pin need no check.

Resource limits are inputs: a DirCache is sized from what RLIMIT_NOFILE leaves (`cache_limit`), so a
low `ulimit -n` makes passes slower (more re-opens), never failing.
"""

from __future__ import annotations

import errno
import os
import resource
import stat as stat_mod
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from bpffs_sync import interrupt, log, membudget
from bpffs_sync.errors import MountPoint, SyncError, Tampered, translate_oserror
from bpffs_sync.paths import RelPath

_log = log.get(__name__)

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# cgroup.max.depth is unlimited by default; a walk keeps one fd per level of the path it is on, so a
# subtree deeper than this is reported (a conflict: not mirrored) instead of exhausting our fds.
MAX_DEPTH = 2048
MOUNTED = "another filesystem is mounted here: left alone"
CACHE_FDS = 256  # a DirCache's size when RLIMIT_NOFILE allows it
CACHES = 2  # DirCaches open at once: an apply's mirror and cgroup sides
# fds left free beside the caches: a walk's current path, libbpf's transient fds (BPF_OBJ_GET, a
# link being pinned), the watcher's opens, a log file; and below which a cache is too small to help.
FD_HEADROOM = 32
EFFICIENT_CACHE = 32
T = TypeVar("T")


WHERE_LEVELS = 16  # a message's path shows this many levels at most (built per step of a walk: O(1), not O(depth))


def where(base: str, rel: RelPath) -> str:
    """A path for messages only (never opened): base joined with the components of rel; past
    WHERE_LEVELS levels, the first and last few with the number left out between them (a user's
    chain of thousands of levels would make each message, and each step building one, O(depth))."""
    if len(rel) > WHERE_LEVELS:
        half = WHERE_LEVELS // 2
        return f"{base}/{'/'.join(rel[:half])}/...({len(rel) - 2 * half} levels)/{'/'.join(rel[-half:])}"
    return f"{base}/{'/'.join(rel)}" if rel else base


def open_dir(parent_fd: int, name: str, what: str, dev: int = 0) -> int:
    """openat(parent_fd, name) as a directory, never following a symlink nor crossing a mount point
    (MountPoint when it is on another filesystem than parent_fd; dev: parent_fd's st_dev when the
    caller knows it). OSError is translated: ENOENT is CgroupGone, ELOOP/ENOTDIR a SyncError."""
    try:
        fd = os.open(name, O_DIR, dir_fd=parent_fd)
    except OSError as err:
        raise translate_oserror(err, "open", what) from err
    try:
        if os.fstat(fd).st_dev != (dev or os.fstat(parent_fd).st_dev):
            raise MountPoint("open", what, 0, MOUNTED)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat_at(parent_fd: int, name: str, what: str, dev: int = 0) -> os.stat_result:
    """lstat of `name` in parent_fd, which must be on parent_fd's filesystem (dev: its st_dev when
    known): MountPoint for a mount point, so nothing is chmodded or removed through one. OSError is
    the caller's (ENOENT and EPERM mean different things to different callers)."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if st.st_dev != (dev or os.fstat(parent_fd).st_dev):
        raise MountPoint("lstat", what, 0, MOUNTED)
    return st


def open_rel(root_fd: int, rel: RelPath, what: str, close_root: bool = False) -> int:
    """The directory at rel below root_fd, one component at a time. The caller closes the fd (and,
    unless close_root, root_fd)."""
    fd = root_fd if close_root else os.dup(root_fd)
    try:
        for depth, name in enumerate(rel):
            nxt = open_dir(fd, name, where(what, rel[: depth + 1]))
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_owned(fd: int, what: str, parent_dev: int | None = None) -> os.stat_result:
    """Refuse a directory we would adopt unless it is root's, writable only by root and (when
    parent_dev is given) on the same filesystem as its parent."""
    st = os.fstat(fd)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise Tampered("adopt", what, errno.ENOTDIR, "not a directory: remove it, then retry")
    if st.st_uid != 0:
        raise Tampered("adopt", what, 0, f"owned by uid {st.st_uid}, not root (planted by another user?): "
                                         "remove it, then retry")
    if st.st_mode & 0o022:
        raise Tampered("adopt", what, 0, f"writable by group or others (mode {st.st_mode & 0o7777:04o}): "
                                         "not safe to use; fix its mode or remove it")
    if parent_dev is not None and st.st_dev != parent_dev:
        raise Tampered("adopt", what, 0, "another filesystem is mounted there")
    return st


def owned_dir(parent_fd: int, name: str, mode: int, what: str, create: bool = True) -> int | None:
    """The directory `name` below parent_fd, made (mode, exactly) when absent and create is set,
    and checked with check_owned before use. None when absent and not create. The caller closes."""
    if create:
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
            os.chmod(name, mode, dir_fd=parent_fd, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as err:
            raise translate_oserror(err, "mkdir", what) from err
    try:
        fd = os.open(name, O_DIR, dir_fd=parent_fd)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                link = stat_mod.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
            except OSError:
                link = False
            kind = "a symlink" if link else "not a directory"
            raise Tampered("adopt", what, 0, f"{kind} (planted by another user?): remove it, then retry") from err
        raise translate_oserror(err, "open", what) from err
    try:
        check_owned(fd, what, os.fstat(parent_fd).st_dev)
    except BaseException:
        os.close(fd)
        raise
    return fd


_warned: set[str] = set()  # what was logged once per process


def cache_limit() -> int:
    """How many directory fds one DirCache may hold: CACHE_FDS, or the share of RLIMIT_NOFILE's
    soft limit left after the fds open now and FD_HEADROOM (at least 2: the root and one level);
    2 near the memory limit (membudget.pressure: a cache only saves work). Logs once per process
    when RLIMIT_NOFILE makes caches too small to be efficient."""
    if membudget.pressure():
        return 2
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CACHE_FDS
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:  # EMFILE itself, or no /proc: assume the worst
        in_use = soft
    limit = max(2, min(CACHE_FDS, (soft - in_use - FD_HEADROOM) // CACHES))
    if limit < EFFICIENT_CACHE and "fd_limit_low" not in _warned:
        _warned.add("fd_limit_low")
        _log.warning("fd_limit_low", nofile=soft, fds_in_use=in_use, dir_cache=limit,
                     efficient_at=in_use + FD_HEADROOM + CACHES * EFFICIENT_CACHE,
                     detail="RLIMIT_NOFILE leaves little room for directory fd caches: passes re-open "
                            "directories more often (slower, still converging); raise ulimit -n / LimitNOFILE")
    return limit


class DirCache:
    """Open directory fds by relative path below one root fd, for a run of operations (an apply):
    siblings share their parent's fd, a path is opened from its nearest open ancestor. Bounded;
    invalidate() a path that was removed (its fd would name a dead directory). close() them all."""

    def __init__(self, root_fd: int, what: str, limit: int = 0) -> None:
        """limit: how many fds to keep open (0: cache_limit(), from RLIMIT_NOFILE)."""
        self.what = what
        self._dev = os.fstat(root_fd).st_dev  # every directory below is on it (open_dir checks each)
        self._fds: OrderedDict[RelPath, int] = OrderedDict({(): os.dup(root_fd)})
        self._limit = limit or cache_limit()

    @property
    def limit(self) -> int:
        """How many fds this cache keeps (for a second cache of the same run of operations)."""
        return self._limit

    def get(self, rel: RelPath) -> int:
        """The fd of the directory at rel (valid until the next get or invalidate)."""
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        depth = self._nearest(rel)
        fd = self._fds[rel[:depth]]
        for i in range(depth, len(rel)):
            fd = open_dir(fd, rel[i], where(self.what, rel[: i + 1]), self._dev)
            self._fds[rel[: i + 1]] = fd
            self._evict(keep=rel[: i + 1])
        return fd

    def reach(self, rel: RelPath) -> int:
        """How many leading components of rel name directories that can be opened (len(rel): all
        of them), opening from the nearest open ancestor and keeping what it opened."""
        depth = self._nearest(rel) if rel not in self._fds else len(rel)
        fd = self._fds[rel[:depth]]
        for i in range(depth, len(rel)):
            try:
                fd = open_dir(fd, rel[i], where(self.what, rel[: i + 1]), self._dev)
            except SyncError:
                return i
            self._fds[rel[: i + 1]] = fd
            self._evict(keep=rel[: i + 1])
        return len(rel)

    def _nearest(self, rel: RelPath) -> int:
        """The depth of rel's deepest ancestor held open (0: the root). Only the depths the cache
        holds are tried (at most its size), each one slice: a deep path (a user's chain of
        thousands of cgroups) costs O(limit x depth) at worst, not O(depth^2)."""
        n = len(rel)
        if n and rel[:-1] in self._fds:  # the usual case: siblings share their parent
            return n - 1
        for depth in sorted({len(k) for k in self._fds if 0 < len(k) < n - 1}, reverse=True):
            if rel[:depth] in self._fds:
                return depth
        return 0

    def invalidate(self, rel: RelPath) -> None:
        """Close rel and what is held below it. The length and last component are compared before
        the prefix (a slice of a deep path costs its depth)."""
        n = len(rel)
        if not n:
            return
        last = rel[-1]
        for key in [k for k in self._fds if len(k) >= n and k[n - 1] == last and k[:n] == rel]:
            os.close(self._fds.pop(key))

    def _evict(self, keep: RelPath) -> None:
        """Close the least recently used fds beyond the limit; never the root, nor `keep` (the fd
        being returned, or the parent the next level opens from)."""
        while len(self._fds) > max(self._limit, 2):
            key, fd = self._fds.popitem(last=False)  # least recently used
            if key and key != keep:
                os.close(fd)
            else:
                self._fds[key] = fd  # back to the end

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


MIN_STEPS = 64  # a walk with a deadline takes at least this many steps (so every pass makes progress)


def descend(top_fd: int, top: RelPath, children: Callable[[int, RelPath], list[T] | None],
            enter: Callable[[int, RelPath, T], tuple[RelPath, int] | None], *, deadline: float = 0.0,
            left: Callable[[RelPath, list[T]], None] | None = None) -> None:
    """Depth first below the directory open at top_fd, holding one fd per level of the current path.

    children(fd, rel): the entries of the directory rel (None: leave it, it could not be listed);
    enter(parent_fd, parent_rel, entry): the (rel, fd) of a subdirectory to go into, else None. Every
    fd this opens or is handed is closed, also on error; top_fd stays the caller's. Raises
    interrupt.Interrupted between two steps once the daemon is stopping. deadline (monotonic; 0:
    none): past it, after MIN_STEPS steps, the walk ends and left(rel, entries) is told, for each
    directory on the current path, the entries it did not visit."""
    fd = os.dup(top_fd)
    todo = children(fd, top)
    if todo is None:
        os.close(fd)
        return
    stack: list[tuple[RelPath, int, list[T]]] = [(top, fd, todo)]
    steps = 0
    try:
        while stack:
            interrupt.check()  # SIGTERM between two directories of a long walk
            steps += 1
            if deadline and steps >= MIN_STEPS and not steps % 16 and time.monotonic() > deadline:
                if left is not None:
                    for rel, _fd, todo in stack:
                        if todo:
                            left(rel, todo)
                return
            rel, fd, todo = stack[-1]
            if not todo:
                os.close(fd)
                stack.pop()
                continue
            entered = enter(fd, rel, todo.pop())
            if entered is None:
                continue
            child, cfd = entered
            below = children(cfd, child)
            if below is None:
                os.close(cfd)
                continue
            stack.append((child, cfd, below))
    finally:
        for _rel, fd, _todo in stack:
            os.close(fd)
