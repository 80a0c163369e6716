"""Read every stat file of the mirror trees, relative to directory fds, never following a symlink.

The mirror lives in a bpffs whose root is world-writable (sticky): the tree roots (`cgroup`,
`cgroup-v1/<hierarchy>`) are opened with O_NOFOLLOW and must be directories owned by root (or by
us), so a look-alike made by an unprivileged user is refused, not read. Below a tree root only the
daemon writes (0755 directories owned by root). Stat files are opened O_NOFOLLOW|O_NONBLOCK and read
with one read() (a stat file is about 1.4 KiB; the iterator returns it whole).

A cgroup removed mid-walk (ENOENT, ENOTDIR) is skipped; any other error is counted, not raised:
a scrape shows what it could read.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from bpffs_sync.paths import MIRROR_V1, MIRROR_V2

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR)
READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Filter:
    """Cardinality controls. A cgroup is exported when its depth (root = 0) is at most max_depth,
    its path (`/jobs/a`; the root is `/`) matches an include glob (when any is given) and no
    exclude glob. Globs are fnmatch patterns: `*` also matches `/`."""

    max_depth: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def wants(self, path: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(path, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(path, p) for p in self.exclude)


@dataclass(frozen=True, slots=True)
class Reading:
    hierarchy: str  # "" for the v2 tree, else the v1 hierarchy's name (`memory`, `cpu,cpuacct`)
    cgroup: str  # `/jobs/a`; the root cgroup is `/`
    stat: str
    text: str


@dataclass(slots=True)
class Walk:
    readings: list[Reading] = field(default_factory=list)
    cgroups: dict[str, int] = field(default_factory=dict)  # tree key -> cgroups exported
    errors: int = 0  # unreadable entries (not counting cgroups that went away)
    refused: list[str] = field(default_factory=list)  # tree roots not owned by root


def _open_dir(name: str, dir_fd: int) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _GONE:
            return None
        raise


def _trusted(fd: int) -> bool:
    st = os.fstat(fd)
    return stat.S_ISDIR(st.st_mode) and st.st_uid in (0, os.geteuid())


def _read(name: str, dir_fd: int) -> str:
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    try:
        return os.read(fd, READ_SIZE).decode("utf-8", "replace")
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Scope:
    key: str  # `cgroup`, `cgroup-v1/<hierarchy>`
    hierarchy: str
    stats: frozenset[str]
    flt: Filter


def _walk_tree(root_fd: int, scope: _Scope, out: Walk) -> None:
    """Depth-first over one tree; the caller owns root_fd."""
    hierarchy, stats, flt = scope.hierarchy, scope.stats, scope.flt
    stack: list[tuple[int, tuple[str, ...], bool]] = [(root_fd, (), False)]
    exported = 0
    while stack:
        fd, rel, owned = stack.pop()
        try:
            path = "/" + "/".join(rel)
            wanted = flt.wants(path)
            exported += wanted
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if name in stats or (flt.max_depth is not None and len(rel) >= flt.max_depth):
                            continue
                        child = _open_dir(name, fd)
                        if child is not None:
                            stack.append((child, (*rel, name), True))
                    elif wanted and name in stats and entry.is_file(follow_symlinks=False):
                        out.readings.append(Reading(hierarchy, path, name, _read(name, fd)))
                except OSError as err:
                    if err.errno not in _GONE:
                        out.errors += 1
        except OSError as err:
            if err.errno not in _GONE:
                out.errors += 1
        finally:
            if owned:
                os.close(fd)
    out.cgroups[scope.key] = exported


def _trees(bpffs_fd: int) -> Iterator[tuple[str, str, int]]:
    """(tree key, hierarchy, root fd) for `cgroup` and every `cgroup-v1/<hierarchy>` directory
    (controller symlinks are aliases: skipped). The caller closes each fd."""
    fd = _open_dir(MIRROR_V2, bpffs_fd)
    if fd is not None:
        yield MIRROR_V2, "", fd
    v1 = _open_dir(MIRROR_V1, bpffs_fd)
    if v1 is None:
        return
    try:
        if not _trusted(v1):
            yield MIRROR_V1, "", -1
            return
        with os.scandir(v1) as it:
            names = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        for name in names:
            child = _open_dir(name, v1)
            if child is not None:
                yield f"{MIRROR_V1}/{name}", name, child
    finally:
        os.close(v1)


def walk(bpffs: str, stats: frozenset[str], flt: Filter) -> Walk:
    """Every readable stat file of every mirror tree under `bpffs` that the filter lets through."""
    out = Walk()
    try:
        bpffs_fd = os.open(bpffs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        out.errors += 1
        return out
    try:
        for key, hierarchy, fd in _trees(bpffs_fd):
            if fd < 0:
                out.refused.append(key)
                continue
            try:
                if _trusted(fd):
                    _walk_tree(fd, _Scope(key, hierarchy, stats, flt), out)
                else:
                    out.refused.append(key)
            finally:
                os.close(fd)
    except OSError:
        out.errors += 1
    finally:
        os.close(bpffs_fd)
    return out
