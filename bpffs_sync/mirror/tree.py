"""The two trees a pass compares: what cgroupfs says should exist, and what bpffs holds.

Both are flat dicts keyed by RelPath inside the mirror root; a stat file of cgroup `jobs/a` is
the key ("jobs", "a", "hist_oncpu").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bpffs_sync.paths import RelPath


class Kind(StrEnum):
    DIR = "dir"
    PIN = "pin"  # a pinned cgroup-iterator link serving one cgroup
    OTHER = "other"  # anything else: a map or prog pin, a non-iterator link, an unreadable entry


@dataclass(frozen=True, slots=True)
class Desired:
    kind: Kind
    cgroup_id: int = 0  # PIN: the cgroup the file must serve
    stat: str = ""  # PIN: which stat program


@dataclass(frozen=True, slots=True)
class Actual:
    kind: Kind
    mode: int = 0  # DIR: permission bits
    cgroup_id: int = 0  # PIN: the cgroup the link serves
    prog_ok: bool = True  # PIN: the program is the current generation of the right stat
    detail: str = ""


DesiredTree = dict[RelPath, Desired]
ActualTree = dict[RelPath, Actual]


@dataclass(slots=True)
class Conflict:
    """A cgroup whose name equals a stat file of its parent: the stat file wins, the child's
    subtree is not mirrored (reported, not drift)."""

    path: RelPath
    cgroup_id: int


@dataclass(slots=True)
class DesiredView:
    tree: DesiredTree = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
