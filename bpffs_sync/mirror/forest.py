"""Many trees, one reconciler: the v2 tree and the selected cgroup-v1 hierarchies.

A Tree is a Layout (bpffs + cgroup root + mirror root + hierarchy id) and the stat programs its
cgroups get. Every tree runs through the same Reconciler; this module only decides *which* trees
exist (from `--v1` selectors and the hierarchies mounted now) and keeps the top of the v1 mirror
in step:

    <bpffs>/cgroup-v1/<hierarchy>/                 a tree's mirror root (made by its own pass)
    <bpffs>/cgroup-v1/<controller> -> <hierarchy>  a symlink per controller not named like its hierarchy

`--v1` selectors: `all`, a controller (`memory`), a hierarchy name (`cpu,cpuacct`, `name=systemd`),
or an absolute cgroup directory on a v1 hierarchy (that subtree is the tree's root, like
`--cgroup-root` for v2). A name no registry knows is KernelUnsupported; a known one that is not
mounted now is `pending` (the daemon picks it up when it is mounted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import v1_controllers
from bpffs_sync import mountinfo
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, UsageError, translate_oserror
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import MIRROR_V1, Layout
from v1_controllers import Hierarchy

ALL = "all"


@dataclass(frozen=True, slots=True)
class Tree:
    layout: Layout
    stats: tuple[str, ...]
    hierarchy: Hierarchy | None = None  # None: the v2 tree

    @property
    def key(self) -> str:
        """`cgroup` or `cgroup-v1/<hierarchy>`: the mirror root relative to bpffs."""
        return self.layout.mirror


def hierarchies() -> list[Hierarchy]:
    """The v1 hierarchies this process sees now (its /proc/self/mountinfo, /proc/cgroups)."""
    return v1_controllers.discover(mountinfo.read())


def _unknown(err: v1_controllers.UnknownController) -> KernelUnsupported:
    return KernelUnsupported("cgroup v1 controller", err.name, 0, str(err))


def _check_name(selector: str) -> None:
    """KernelUnsupported unless every controller named in `selector` is known."""
    for part in selector.split(","):
        if not part.startswith("name="):
            try:
                v1_controllers.controller(part)
            except v1_controllers.UnknownController as err:
                raise _unknown(err) from None


def _default_stats(h: Hierarchy) -> tuple[str, ...]:
    try:
        return v1_controllers.default_stats(h.controllers)
    except v1_controllers.UnknownController as err:
        raise _unknown(err) from None


@dataclass(slots=True)
class Selection:
    """What `--v1` asked for. Validated once; resolved against the mounted hierarchies each pass."""

    selectors: list[str]
    paths: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for sel in self.selectors:
            if sel == ALL:
                self.names.append(sel)
            elif sel.startswith("/"):
                self.paths.append(os.path.realpath(sel))
            elif sel:
                _check_name(sel)
                self.names.append(sel)
            else:
                raise UsageError("--v1", sel, 0, "empty selector")

    def _matches(self, h: Hierarchy) -> bool:
        return any(n == ALL or h.answers(n) for n in self.names)

    def pending(self, hierarchies: list[Hierarchy]) -> list[str]:
        """Selectors no mounted hierarchy answers now."""
        out = [n for n in self.names if n != ALL and not any(h.answers(n) for h in hierarchies)]
        return out + [p for p in self.paths if _containing(p, hierarchies) is None]

    def trees(self, base: Layout, hierarchies: list[Hierarchy]) -> list[Tree]:
        """One tree per selected hierarchy, on base's bpffs with base's file access; a path
        selector makes that subtree the tree's root."""
        roots: dict[str, tuple[Hierarchy, str]] = {h.name: (h, h.mount_point) for h in hierarchies if self._matches(h)}
        for path in self.paths:
            found = _containing(path, hierarchies)
            if found is not None:
                roots[found.name] = (found, path)
        return [Tree(Layout.for_v1(base, root, h.name, h.hierarchy_id), _default_stats(h), h)
                for h, root in roots.values()]


def _containing(path: str, hierarchies: list[Hierarchy]) -> Hierarchy | None:
    """The hierarchy whose mount holds the cgroup directory `path` (None: not a mounted v1 cgroup)."""
    if not os.path.exists(os.path.join(path, "cgroup.procs")):
        return None
    for h in hierarchies:
        for mp in h.mount_points:
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                return h
    return None


def resolve_now(selection: Selection, base: Layout) -> list[Tree]:
    """The trees for a one-shot command: every selector must be answered now."""
    found = hierarchies()
    missing = selection.pending(found)
    if missing:
        raise EnvironmentProblem("--v1", ", ".join(missing), 0,
                                 "not mounted (no cgroup v1 hierarchy, controller or cgroup directory by that name)")
    return selection.trees(base, found)


# --- the top of the v1 mirror: hierarchy directories and controller symlinks ------------------------


@dataclass(frozen=True, slots=True)
class TopDrift:
    name: str
    reason: str  # missing | stale | wrong_target
    target: str = ""  # the symlink's wanted target ("" for a hierarchy directory)


def v1_root(bpffs_root: str) -> str:
    return os.path.join(bpffs_root, MIRROR_V1)


def top_desired(trees: list[Tree]) -> dict[str, str]:
    """name -> "" (a hierarchy directory) or the symlink target, for the v1 trees in `trees`."""
    out: dict[str, str] = {}
    for t in trees:
        if t.hierarchy is not None:
            out.setdefault(t.hierarchy.name, "")
            for ctrl, target in t.hierarchy.symlinks().items():
                out.setdefault(ctrl, target)
    return out


def top_actual(bpffs_root: str, expect_dev: int = 0) -> dict[str, str | None]:
    """name -> "" (a directory), the symlink target, or None (something else)."""
    fd = bpffs.open_sub(bpffs_root, (MIRROR_V1,), create=False, expect_dev=expect_dev)
    if fd is None:
        return {}
    out: dict[str, str | None] = {}
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_link, is_dir in entries:
            if is_link:
                out[name] = os.readlink(name, dir_fd=fd)
            else:
                out[name] = "" if is_dir else None
    except FileNotFoundError:
        pass
    except OSError as err:
        raise translate_oserror(err, "listdir", v1_root(bpffs_root)) from err
    finally:
        os.close(fd)
    return out


def top_diff(desired: dict[str, str], actual: dict[str, str | None], prune: bool) -> list[TopDrift]:
    """Pure. `prune`: entries nobody wants are drift too (only when every hierarchy is selected)."""
    out = []
    for name, want in sorted(desired.items()):
        if name not in actual:
            out.append(TopDrift(name, "missing", want))
            continue
        have = actual[name]
        if have != want:
            wrong_target = bool(want) and bool(have)  # both symlinks, pointing elsewhere
            out.append(TopDrift(name, "wrong_target" if wrong_target else "wrong_kind", want))
    if prune:
        out.extend(TopDrift(name, "stale") for name in sorted(set(actual) - set(desired)))
    return out


def top_apply(bpffs_root: str, drift: list[TopDrift], expect_dev: int = 0) -> list[str]:
    """Make the top match; a hierarchy directory's contents come from its own tree's pass. Returns
    the stale hierarchy directories removed (every pin below them is unpinned)."""
    root = v1_root(bpffs_root)
    fd = bpffs.open_sub(bpffs_root, (MIRROR_V1,), create=True, expect_dev=expect_dev)
    assert fd is not None
    removed = []
    try:
        for d in drift:
            what = os.path.join(root, d.name)
            gone = bpffs.remove_tree_at(fd, d.name, what) if d.reason != "missing" else 0
            if d.reason == "stale":
                if gone:
                    removed.append(d.name)
                continue
            if d.target:
                bpffs.symlink_at(d.target, fd, d.name, what)
            else:
                bpffs.mkdir_at(fd, d.name, what)
    finally:
        os.close(fd)
    return removed
