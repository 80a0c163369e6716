"""Carry out a Plan against bpffs. Idempotent: every op tolerates having been done already.

Every op works on one name in an open directory: the bpffs side through the mirror root's fd, the
cgroup side through the cgroup root's fd (dirfd.DirCache: siblings share their parent's fd), so no
op depends on a path's length or follows a symlink.

One failed op does not stop the pass: it is logged and counted (with the path, for a retry of its
scope), and what lies below a directory that could not be made is skipped, not failed N times.
A cgroup that vanished before its pin was made is not a failure.

Bounded (Budget): the daemon's passes apply at most Budget.ops ops, and ~Budget.seconds, of each
top-level subtree (a removal of a huge subtree is cut between two entries), smallest subtrees
first (fair_order); the rest of a subtree's ops are left (ApplyResult.cut) for the next pass, which
re-reads its scopes -- deferring is safe, the mirror is level-triggered. So a user's subtree with
thousands of pending ops costs each pass a bounded slice, and a hint elsewhere is served by the
next short pass. Within a subtree
the order of the plan is kept (a cut leaves a suffix), so nothing is made before what it replaces
is gone. interrupt.Interrupted (SIGTERM) ends an apply between two ops, or two entries of one.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bpffs_sync import dirfd, interrupt, log
from bpffs_sync.errors import CgroupGone, SyncError
from bpffs_sync.mirror import bpffs
from bpffs_sync.mirror.diff import Op, OpKind, Plan, Reason
from bpffs_sync.mirror.roots import Roots
from bpffs_sync.mirror.tree import under
from bpffs_sync.paths import Layout, RelPath, display

_log = log.get(__name__)


class Pinner(Protocol):
    """What a pass needs of a loaded stat (loader.LoadedStat on a stock kernel)."""

    @property
    def map_id(self) -> int | None:
        """The stats map its pins read (their generation); None for a stat with no map."""
        ...

    def pin_cgroup(self, cgroup_fd: int, dir_fd: int, name: str, what: str) -> int:
        """Pin a file serving the cgroup open at cgroup_fd as `name` in dir_fd; its cgroup id."""
        ...

    def forget_cgroup(self, hierarchy_id: int, cgroup_id: int) -> bool:
        """Drop what the stat keeps for a removed cgroup."""
        ...


OPS_PER_GROUP = 512  # ops of one top-level subtree a budgeted pass applies
SECONDS_PER_GROUP = 0.03  # and about this long (a removal in progress is cut between two entries)
WALK_SECONDS_PER_GROUP = 0.02  # a hinted pass's walks of one top-level subtree (reconciler.observe)


@dataclass(frozen=True, slots=True)
class Budget:
    """How much of each top-level subtree's work one pass does (the rest: the next pass's)."""

    ops: int = OPS_PER_GROUP
    seconds: float = SECONDS_PER_GROUP
    walk_seconds: float = WALK_SECONDS_PER_GROUP


class _Cut(Exception):
    """A subtree's budget ran out inside one op (a removal): the rest of it waits."""


def group_of(path: RelPath) -> str:
    """The top-level cgroup a path is in ("" for the mirror root): the unit of a budget."""
    return path[0] if path else ""


@dataclass(slots=True)
class ApplyResult:
    done: Counter[str] = field(default_factory=Counter)
    gone: int = 0
    skipped: int = 0  # below a directory that could not be made
    errors: list[str] = field(default_factory=list)
    failed: list[RelPath] = field(default_factory=list)  # paths whose op failed (their scopes want a retry)
    cut: set[str] = field(default_factory=set)  # top-level subtrees whose budget ran out (ops left)
    left: int = 0  # ops not run (or not finished) for the budget: the next pass's


class _Target:
    """The two trees an apply works in, as directory fd caches; closed at the end."""

    def __init__(self, layout: Layout, roots: Roots, complete: bool, cgroup_dirs: dirfd.DirCache | None) -> None:
        self.layout = layout
        self.complete = complete  # the pass covers the whole tree (its live ids are every live id)
        self.root = layout.mirror_root
        mroot = roots.mirror(create=True)
        assert mroot is not None
        self.cgroups = cgroup_dirs or dirfd.DirCache(roots.cgroup(), layout.cgroup_root)
        self._own_cgroups = cgroup_dirs is None  # else the pass's, closed by the pass
        self.mirror = dirfd.DirCache(mroot, layout.mirror_root, self.cgroups.limit)

    def close(self) -> None:
        self.mirror.close()
        if self._own_cgroups:
            self.cgroups.close()


def _apply_one(op: Op, t: _Target, stats: Mapping[str, Pinner], live_ids: set[int],
               tick: Callable[[], None] | None = None) -> None:
    what = dirfd.where(t.root, op.path)  # for messages
    if not op.path:  # the mirror root: made and checked by _Target (dirfd.owned_dir)
        if op.kind is OpKind.CHMOD:
            fd = t.mirror.get(())
            os.fchown(fd, 0, op.gid)
            os.fchmod(fd, op.mode)
        return
    parent = t.mirror.get(op.path[:-1])
    name = op.path[-1]
    if op.kind is OpKind.REMOVE:
        try:
            bpffs.remove_tree_at(parent, name, what, tick=tick)
        finally:  # also when cut or interrupted half-way: fds held below it may name removed directories
            t.mirror.invalidate(op.path)
        forget = op.reason in (Reason.STALE, Reason.WRONG_CGROUP) and op.actual_cgroup_id
        # v2 cgroups cannot be renamed, so a removed one is gone for good; a v1 cgroup may live on under
        # another name outside this pass's scopes: its counts are forgotten by a complete pass only.
        forget = forget and (t.layout.hierarchy_id == 0 or t.complete)
        if forget and op.actual_cgroup_id not in live_ids:
            for loaded in stats.values():
                loaded.forget_cgroup(t.layout.hierarchy_id, op.actual_cgroup_id)
    elif op.kind is OpKind.MKDIR:
        bpffs.mkdir_at(parent, name, what, op.mode)
    elif op.kind is OpKind.CHMOD:
        bpffs.set_access_at(parent, name, what, op.mode, op.gid)
    elif op.kind is OpKind.PIN:
        target = stats.get(op.stat)
        if target is None:
            raise SyncError("pin", what, 0, f"stat program {op.stat} is not loaded")
        target.pin_cgroup(t.cgroups.get(op.path[:-1]), parent, name, what)
        bpffs.set_access_at(parent, name, what, op.mode, op.gid, fresh=True)


MIN_REMOVED = 64  # entries a cut removal removes at least (its descent alone may spend the budget)


def _deadline(limit: float) -> Callable[[], None]:
    """A removal's tick: _Cut past limit, once it removed MIN_REMOVED entries (so every pass makes
    progress on a subtree deeper than one budget's worth of walking)."""
    removed = 0

    def tick() -> None:
        nonlocal removed
        removed += 1
        if removed >= MIN_REMOVED and time.monotonic() > limit:
            raise _Cut
    return tick


def fair_order(ops: list[Op]) -> list[Op]:
    """The ops grouped by top-level subtree, the mirror root's first and then the smallest groups
    first; each group's ops in the plan's order (removals deepest first, then creations). Subtrees
    are independent, so this changes nothing but who waits: a cgroup made beside a user's subtree
    with thousands of pending ops is mirrored before that subtree's budget is spent."""
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(group_of(op.path), []).append(op)
    if len(groups) < 2:
        return ops
    return [op for g in sorted(groups, key=lambda g: (g != "", len(groups[g]))) for op in groups[g]]


class _Meter:
    """What each top-level subtree spent of the budget in one apply (ops run, seconds)."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.count: Counter[str] = Counter()
        self.spent: dict[str, float] = {}

    def over(self, group: str) -> bool:
        b = self.budget
        return b is not None and (self.count[group] >= b.ops or self.spent.get(group, 0.0) >= b.seconds)

    def tick(self, op: Op, group: str, began: float) -> Callable[[], None] | None:
        """For a removal (the one op that can run long): its cut once the subtree's time is up."""
        if self.budget is None or op.kind is not OpKind.REMOVE:
            return None
        return _deadline(began + self.budget.seconds - self.spent.get(group, 0.0))

    def charge(self, group: str, began: float) -> None:
        self.count[group] += 1
        self.spent[group] = self.spent.get(group, 0.0) + time.monotonic() - began


def apply(plan: Plan, layout: Layout, stats: Mapping[str, Pinner], live_ids: set[int],
          roots: Roots | None = None, *, complete: bool = True,
          cgroup_dirs: dirfd.DirCache | None = None, budget: Budget | None = None) -> ApplyResult:
    """roots: the pass's held root directories (else opened and checked here, for this apply);
    complete: the plan covers the whole tree (live_ids are all live ids); cgroup_dirs: the pass's
    open cgroup directories below roots.cgroup() (else opened here), left open for the pass;
    budget: at most this much of each top-level subtree (None: the whole plan)."""
    result = ApplyResult()
    meter = _Meter(budget)
    broken: set[RelPath] = set()  # directories whose creation failed: nothing below them can be made
    own = roots is None
    held = Roots(layout) if roots is None else roots
    try:
        target = _Target(layout, held, complete, cgroup_dirs)
    except BaseException:
        if own:
            held.close()
        raise
    try:
        for op in fair_order(plan.ops) if budget is not None else plan.ops:
            interrupt.check()  # SIGTERM between two ops
            group = group_of(op.path)
            if group in result.cut or meter.over(group):  # the rest of this subtree: the next pass
                result.cut.add(group)
                result.left += 1
                continue
            if op.kind is not OpKind.REMOVE and under(op.path[:-1], broken):
                result.skipped += 1
                continue
            began = time.monotonic()
            try:
                _apply_one(op, target, stats, live_ids, meter.tick(op, group, began))
            except _Cut:  # part of a removal done: the rest of it, and of its subtree, next pass
                result.cut.add(group)
                result.left += 1
                continue
            except CgroupGone:
                result.gone += 1
                _log.debug("cgroup_gone", op=str(op.kind), path=display(op.path))
                continue
            except (SyncError, OSError) as err:
                result.errors.append(f"{op.describe()}: {err}")
                result.failed.append(op.path)
                if op.kind is OpKind.MKDIR:
                    broken.add(op.path)
                _log.warning("op_failed", op=str(op.kind), path=display(op.path), reason=str(op.reason),
                             error=str(err), errno=getattr(err, "errno", 0))
                continue
            finally:
                meter.charge(group, began)
            result.done[str(op.kind)] += 1
    finally:
        target.close()
        if own:
            held.close()
    return result
