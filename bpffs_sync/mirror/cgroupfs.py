"""cgroupfs walk -> the desired mirror tree.

A cgroup's id is its kernfs node id, which is the directory's inode number (d_ino from getdents,
so the walk needs no stat per cgroup). Directories that vanish mid-walk are skipped: the event for
their removal brings the next pass.

The walk is relative to directory fds, one per level of the current path (dirfd.py): cgroup names
and nesting are chosen by unprivileged users in delegated subtrees, and a chain of cgroups can be
longer than PATH_MAX. A directory that cannot be listed, or lies deeper than dirfd.MAX_DEPTH, is a
Conflict (reported, not mirrored) and never stops the rest of the pass.
"""

from __future__ import annotations

import errno
import os
import struct

from bpffs_sync import dirfd
from bpffs_sync.errors import CgroupGone, EnvironmentProblem, SyncError
from bpffs_sync.mirror.tree import Conflict, ConflictReason, Desired, DesiredView, Kind
from bpffs_sync.paths import Layout, RelPath

_GONE = (errno.ENOENT, errno.ENOTDIR)
_REC = struct.Struct("<QQHH")  # id, parent id, level, name length (bpf/cgroup_tree.h), then the name


class TornTree(Exception):
    """Records that do not form a pre-order tree (a parent id that is not the cgroup above)."""


def check_root(cgroup_root: str) -> None:
    """A usable cgroup root: an existing directory holding cgroup.procs."""
    if not os.path.exists(cgroup_root):
        raise EnvironmentProblem("cgroup root", cgroup_root, errno.ENOENT)
    if not os.path.isdir(cgroup_root):
        raise EnvironmentProblem("cgroup root", cgroup_root, errno.ENOTDIR)
    if not os.path.exists(os.path.join(cgroup_root, "cgroup.procs")):
        raise EnvironmentProblem("cgroup root", cgroup_root, 0, "not a cgroup directory")


def open_root(cgroup_root: str) -> int:
    """The cgroup root (the administrator's path). The caller closes the fd."""
    try:
        return os.open(cgroup_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise EnvironmentProblem("cgroup root", cgroup_root, err.errno or 0) from err


def first_gone(layout: Layout, scope: RelPath, root_fd: int | None = None,
               dirs: dirfd.DirCache | None = None) -> RelPath:
    """The shortest prefix of scope that names no cgroup now (scope itself when all exist).
    root_fd: the cgroup root, held by the caller (else opened here); dirs: the pass's directories
    below it (what is opened here stays open there for the walk)."""
    if dirs is not None:  # one descent from the nearest open ancestor (not one lookup per prefix)
        depth = dirs.reach(scope)
        return scope if depth == len(scope) else scope[: depth + 1]
    fd = open_root(layout.cgroup_root) if root_fd is None else os.dup(root_fd)
    try:
        for depth in range(len(scope)):
            try:
                nxt = dirfd.open_dir(fd, scope[depth], dirfd.where(layout.cgroup_root, scope[: depth + 1]))
            except SyncError:
                return scope[: depth + 1]
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return scope


def _add_cgroup(view: DesiredView, layout: Layout, rel: RelPath, cgid: int, stats: tuple[str, ...]) -> None:
    view.tree[rel] = Desired(Kind.DIR)
    view.ids[rel] = cgid
    for stat in stats:
        view.tree[(*rel, stat)] = Desired(Kind.PIN, cgid, stat, layout.file_mode, layout.file_gid)


def _children(fd: int) -> list[tuple[str, int]]:
    with os.scandir(fd) as it:
        return [(e.name, e.inode()) for e in it if e.is_dir(follow_symlinks=False)]


def walk(layout: Layout, stats: tuple[str, ...], scope: RelPath = (),
         shadow: frozenset[str] | None = None, root_fd: int | None = None, *,
         dirs: dirfd.DirCache | None = None, deadline: float = 0.0) -> DesiredView:
    """Desired entries for the cgroup subtree at `scope`, plus the directories above it.

    `scope` must already be normalised by paths.mirrored_scope(). When the cgroup at `scope` is
    gone, only its existing ancestors are returned (as directories), so a pass removes the rest.
    `shadow`: the file names that hide a cgroup of that name (default: `stats`; the kernel mirror
    passes every link's name). root_fd: the cgroup root, held by the caller (else opened here);
    dirs: the pass's directories below root_fd, from which the way down to scope is taken.
    deadline (monotonic, 0: none): past it the walk stops (dirfd.descend); what it did not visit
    is opaque and listed in view.cut, for a later pass to read.
    """
    view = DesiredView()
    if len(scope) >= dirfd.MAX_DEPTH:  # the full pass leaves it opaque: so does a scoped one
        view.opaque.add(scope[: dirfd.MAX_DEPTH])
        return view
    fd = open_root(layout.cgroup_root) if root_fd is None else os.dup(root_fd)
    try:
        start = 0
        if dirs is not None and scope and dirs.reach(scope) == len(scope):
            # The pass's directories reach the scope (normalise opened them): one lookup, not one
            # per level (a deep scope's levels beyond the cache's size would all be opened again).
            nxt = os.dup(dirs.get(scope))
            os.close(fd)
            fd = nxt
            for depth in range(len(scope)):
                view.tree[scope[:depth]] = Desired(Kind.DIR)
            start = len(scope)
        for depth in range(start, len(scope)):  # down to the scope holding one fd at a time
            view.tree[scope[:depth]] = Desired(Kind.DIR)
            rel = scope[: depth + 1]
            try:
                nxt = (os.dup(dirs.get(rel)) if dirs is not None
                       else dirfd.open_dir(fd, scope[depth], dirfd.where(layout.cgroup_root, rel)))
            except CgroupGone:
                return view
            except SyncError as err:  # EMFILE, ...: that subtree is unknown this time, not a failed pass
                _unreadable(view, rel, 0, OSError(err.errno, err.detail))
                return view
            os.close(fd)
            fd = nxt
        _add_cgroup(view, layout, scope, os.fstat(fd).st_ino, stats)
        _walk_below(layout, fd, scope, stats, stat_set=frozenset(stats) if shadow is None else shadow, view=view,
                    deadline=deadline)
    finally:
        os.close(fd)
    return view


def _walk_below(layout: Layout, top_fd: int, top: RelPath, stats: tuple[str, ...], *, stat_set: frozenset[str],
                view: DesiredView, deadline: float = 0.0) -> None:
    """Depth first below top (dirfd.descend: one fd per level of the current path)."""
    ids = {top: os.fstat(top_fd).st_ino}

    def children(fd: int, rel: RelPath) -> list[tuple[str, int]] | None:
        try:
            below = _children(fd)
        except OSError as err:
            if err.errno not in _GONE:
                _unreadable(view, rel, ids[rel], err)
            return None
        if rel != top:
            _add_cgroup(view, layout, rel, ids[rel], stats)
        return below

    def enter(fd: int, rel: RelPath, entry: tuple[str, int]) -> tuple[RelPath, int] | None:
        name, ino = entry
        child = (*rel, name)
        if name in stat_set:
            view.conflicts.append(Conflict(child, ino))
            return None
        if len(child) >= dirfd.MAX_DEPTH:
            too_deep = f"deeper than {dirfd.MAX_DEPTH} levels"
            view.conflicts.append(Conflict(child, ino, ConflictReason.TOO_DEEP, too_deep))
            view.opaque.add(child)
            return None
        try:
            cfd = os.open(name, dirfd.O_DIR, dir_fd=fd)
        except OSError as err:
            if err.errno not in _GONE:
                _unreadable(view, child, ino, err)
            return None
        ids[child] = ino
        return child, cfd

    def left(rel: RelPath, entries: list[tuple[str, int]]) -> None:
        for name, _ino in entries:
            child = (*rel, name)
            view.opaque.add(child)
            view.cut.append(child)

    dirfd.descend(top_fd, top, children, enter, deadline=deadline, left=left)


def _unreadable(view: DesiredView, rel: RelPath, ino: int, err: OSError) -> None:
    view.conflicts.append(Conflict(rel, ino, ConflictReason.UNREADABLE, os.strerror(err.errno or 0)))
    view.opaque.add(rel)
    for key in [k for k in view.tree if k[: len(rel)] == rel]:
        del view.tree[key]


def view_from_records(layout: Layout, stats: tuple[str, ...], blob: bytes,
                      shadow: frozenset[str] | None = None) -> DesiredView:
    """walk(layout, stats) of the whole tree, from cgroup_tree's records (mirror/cgtree.py): one
    per live cgroup, pre-order from the root, each with its parent's id and its kernfs name byte
    for byte (decoded as os.fsdecode, like the walk's names). The same entries, conflicts and
    opaque subtrees as the walk (tests/test_cgtree.py), minus UNREADABLE: nothing here is listed.
    TornTree when the records are not one pre-order tree."""
    view = DesiredView()
    stat_set = frozenset(stats) if shadow is None else shadow
    unpack = _REC.unpack_from
    size = _REC.size
    paths: list[RelPath] = []  # the path at each depth of the current branch
    ids: list[int] = []
    skip = -1  # the depth of a subtree left out (shadowed, too deep): its records are skipped
    top = -1  # the root's level
    tree, view_ids = view.tree, view.ids
    pin = Kind.PIN
    mode, gid = layout.file_mode, layout.file_gid
    dir_entry = Desired(Kind.DIR)
    off, end = 0, len(blob)
    while off < end:
        cgid, parent, level, n = unpack(blob, off)
        name_at = off + size
        off = name_at + n
        if top < 0:
            top = level
        depth = level - top
        if skip >= 0:
            if depth > skip:
                continue
            skip = -1
        if depth == 0:
            if paths:
                raise TornTree("a second root")
            rel: RelPath = ()
        else:
            if depth > len(paths) or ids[depth - 1] != parent:
                raise TornTree(f"cgroup {cgid}: parent {parent} is not the cgroup above it")
            name = os.fsdecode(blob[name_at:off])
            rel = (*paths[depth - 1], name)
            if name in stat_set or depth >= dirfd.MAX_DEPTH:
                _left_out(view, rel, cgid, name in stat_set)
                skip = depth
                continue
            del paths[depth:]
            del ids[depth:]
        paths.append(rel)
        ids.append(cgid)
        tree[rel] = dir_entry
        view_ids[rel] = cgid
        for stat in stats:
            tree[(*rel, stat)] = Desired(pin, cgid, stat, mode, gid)
    return view


def _left_out(view: DesiredView, rel: RelPath, cgid: int, shadowed: bool) -> None:
    """A cgroup the records' walk does not enter, reported as the cgroupfs walk reports it."""
    if shadowed:
        view.conflicts.append(Conflict(rel, cgid))
        return
    view.conflicts.append(Conflict(rel, cgid, ConflictReason.TOO_DEEP, f"deeper than {dirfd.MAX_DEPTH} levels"))
    view.opaque.add(rel)
