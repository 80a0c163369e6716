"""The two trees a pass compares: what cgroupfs says should exist, and what bpffs holds.

Both are flat dicts keyed by RelPath inside the mirror root; a stat file of cgroup `jobs/a` is
the key ("jobs", "a", "hist_oncpu").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bpffs_sync.paths import DIR_MODE, RelPath


class Kind(StrEnum):
    DIR = "dir"
    PIN = "pin"  # a pinned cgroup-iterator link serving one cgroup
    OTHER = "other"  # anything else: a map or prog pin, a non-iterator link, an unreadable entry
    MOUNT = "mount"  # another filesystem mounted on the entry: never entered, changed or removed


@dataclass(frozen=True, slots=True)
class Desired:
    kind: Kind
    cgroup_id: int = 0  # PIN: the cgroup the file must serve
    stat: str = ""  # PIN: which stat program
    mode: int = DIR_MODE  # permission bits
    gid: int = 0  # group (owner is always root)


@dataclass(frozen=True, slots=True)
class Actual:
    kind: Kind
    mode: int = 0  # permission bits
    gid: int = 0
    cgroup_id: int = 0  # PIN: the cgroup the link serves
    prog_ok: bool = True  # PIN: the program is the current generation of the right stat
    detail: str = ""
    known: bool = True  # PIN: cgroup_id is known (a kernel file of a program we cannot read it from: not)


DesiredTree = dict[RelPath, Desired]
ActualTree = dict[RelPath, Actual]


class ConflictReason(StrEnum):
    SHADOWED = "shadowed"  # named like a stat file of its parent: the stat file wins
    UNREADABLE = "unreadable"  # the cgroup directory could not be listed (detail says why)
    TOO_DEEP = "too_deep"  # below dirfd.MAX_DEPTH levels


@dataclass(frozen=True, slots=True)
class Conflict:
    """A cgroup subtree that is not mirrored (reported, not drift; it never blocks the rest).
    Its bpffs side is left as it is: a pass neither adds nor removes anything below it."""

    path: RelPath
    cgroup_id: int
    reason: ConflictReason = ConflictReason.SHADOWED
    detail: str = ""


@dataclass(slots=True)
class DesiredView:
    tree: DesiredTree = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    opaque: set[RelPath] = field(default_factory=set)  # subtrees whose desired state is unknown
    cut: list[RelPath] = field(default_factory=list)  # of those, the ones a walk's deadline left (read later)
    ids: dict[RelPath, int] = field(default_factory=dict)  # every cgroup walked -> its id


@dataclass(slots=True)
class ActualView:
    tree: ActualTree = field(default_factory=dict)
    opaque: set[RelPath] = field(default_factory=set)  # subtrees that could not be read
    cut: list[RelPath] = field(default_factory=list)  # of those, the ones a walk's deadline left (read later)


def under(path: RelPath, tops: set[RelPath]) -> bool:
    """Is path one of tops or below one? One slice per distinct length of tops, or per level of
    path when that is fewer (a slice of a deep path costs its depth)."""
    if not tops:
        return False
    n = len(path)
    depths = {len(t) for t in tops if len(t) <= n} if len(tops) <= n else range(n + 1)
    return any(path[:depth] in tops for depth in depths)
