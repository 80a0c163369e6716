"""Where things live, and how names map between cgroupfs and bpffs.

Relative paths are tuples of components (`("jobs", "a")`; the root is `()`), so names with dots,
spaces, newlines-free UTF-8 or undecodable bytes (kept as surrogate escapes) never need quoting.

bpffs layout (docs/architecture.md, section 1):
    <bpffs>/cgroup/<v2 cgroup path>/<stat>                     the v2 mirror (kernel-owned on a patched kernel)
    <bpffs>/cgroup-v1/<hierarchy>/<v1 cgroup path>/<stat>      one mirror per v1 hierarchy
    <bpffs>/cgroup-v1/<controller> -> <hierarchy>              when the two names differ
    <bpffs>/bpffs-sync/<stat>/...                              pinned maps and collector links, outside the mirror
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

RelPath = tuple[str, ...]

MIRROR_V2 = "cgroup"
MIRROR_V1 = "cgroup-v1"
PRIVATE_DIR = "bpffs-sync"
DIR_MODE = 0o755
# Stat files follow cgroupfs: a cgroup's stat files (cpu.stat, memory.stat) are readable by everyone,
# in delegated subtrees too (delegation hands over the directory and the writable knobs, not reading).
FILE_MODE = 0o444
_STAT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,14}$")  # a BPF program name: BPF_OBJ_NAME_LEN - 1


@dataclass(frozen=True, slots=True)
class Layout:
    """The two roots a mirror joins: a bpffs mount and a cgroup (sub)tree. One Layout per tree:
    the v2 tree (hierarchy 0, mirrored at <bpffs>/cgroup) or one v1 hierarchy (see for_v1)."""

    bpffs: str
    cgroup_root: str
    mirror: str = MIRROR_V2  # the mirror root, relative to bpffs
    hierarchy_id: int = 0  # cgroup_root->hierarchy_id: 0 is v2; half of every stats-map key
    file_mode: int = FILE_MODE  # permission bits of every stat file (owner root)
    file_gid: int = 0  # group of every stat file (with file_mode 0440: who may read)
    bpffs_dev: int = 0  # st_dev of the bpffs instance the daemon holds the lock of (0: not checked)

    @classmethod
    def for_v1(cls, base: Layout, cgroup_root: str, hierarchy: str, hierarchy_id: int) -> Layout:
        """The layout of one v1 hierarchy's tree, on base's bpffs with base's file access."""
        return cls(base.bpffs, cgroup_root, os.path.join(MIRROR_V1, hierarchy), hierarchy_id,
                   base.file_mode, base.file_gid, base.bpffs_dev)

    @property
    def mirror_parts(self) -> tuple[str, ...]:
        """The mirror root's components below the bpffs root: ("cgroup",) or ("cgroup-v1", "memory")."""
        return tuple(self.mirror.split("/"))

    @property
    def mirror_root(self) -> str:
        return os.path.join(self.bpffs, self.mirror)

    @property
    def private_root(self) -> str:
        return os.path.join(self.bpffs, PRIVATE_DIR)

    def mirror_path(self, rel: RelPath) -> str:
        """For messages and path-based readers (a pass itself goes through directory fds)."""
        return _join(self.mirror_root, rel)

    def cgroup_path(self, rel: RelPath) -> str:
        return _join(self.cgroup_root, rel)

    def private_path(self, stat: str, *names: str) -> str:
        return os.path.join(self.private_root, stat, *names)


def _join(base: str, rel: RelPath) -> str:
    """os.path.join(base, *rel) for relative components, at a fifth of its cost (hot in walks)."""
    return f"{base.rstrip('/')}/{'/'.join(rel)}" if rel else base


def display(rel: RelPath) -> str:
    """Human form of a relative path: `jobs/a`, or `.` for the root."""
    return "/".join(rel) if rel else "."


def parse_rel(text: str) -> RelPath:
    """Inverse of display(): `jobs/a` -> ("jobs", "a"); `.`, `` and `/` -> ()."""
    return tuple(part for part in text.split("/") if part and part != ".")


def needs_dot_trick(name: str) -> bool:
    """bpffs' lookup refuses names with a dot unless the parent's mode is 0 (kernel/bpf/inode.c)."""
    return "." in name


def valid_stat_name(name: str) -> bool:
    return bool(_STAT_NAME.match(name))


def mirrored_scope(scope: RelPath, stats: frozenset[str]) -> RelPath | None:
    """The scope a hint at `scope` asks a pass to re-read, or None when there is nothing to read.

    A cgroup named like a stat file is shadowed by its parent's stat file: it and everything
    below it are never mirrored (a Conflict of the parent's walk), so a change at or below it
    changes nothing in the mirror. The hint is dropped rather than widened to the parent (which
    would make a user's churn below `d/hist_oncpu/x` re-walk all of `d` on every pass). A change
    of the shadowed name itself is seen by the parent's next walk (a full pass, or a hint for the
    parent) as a conflict only: the stat file stays what it was."""
    for name in scope:
        if name in stats:
            return None
    return scope


def coalesce(scopes: list[RelPath]) -> list[RelPath]:
    """Drop scopes covered by another scope in the list (an ancestor's pass covers its subtree)."""
    kept: set[RelPath] = set()
    lengths: list[int] = []  # of the kept scopes, ascending: only prefixes of those lengths can be kept
    out: list[RelPath] = []
    for scope in sorted(set(scopes), key=lambda s: (len(s), s)):
        n = len(scope)
        # One slice per length kept so far (a slice of a deep path costs its depth: one per level would
        # make a user's chain of thousands of nested hints quadratic per scope).
        if not any(scope[:depth] in kept for depth in lengths if depth < n):
            kept.add(scope)
            out.append(scope)
            if not lengths or lengths[-1] != n:
                lengths.append(n)
    return out


def share(scopes: list[RelPath], per_group: int) -> tuple[list[RelPath], list[RelPath]]:
    """(taken, deferred): at most per_group scopes of each top-level cgroup, in the order given
    (the oldest hints first); the rest wait for the next pass. One subtree's backlog (a user's
    churn below their own cgroup) then costs a bounded share of a pass, and a scope elsewhere is
    never behind more than per_group scopes of any other subtree. The root scope () takes all."""
    if () in scopes:
        return [()], []
    taken: list[RelPath] = []
    deferred: list[RelPath] = []
    counts: dict[str, int] = {}
    for scope in scopes:
        n = counts.get(scope[0], 0)
        if n < per_group:
            counts[scope[0]] = n + 1
            taken.append(scope)
        else:
            deferred.append(scope)
    return taken, deferred
