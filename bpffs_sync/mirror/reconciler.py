"""One reconcile pass: desired (cgroupfs walk) vs actual (bpffs walk + link info) -> plan -> apply.

Level-triggered: a request is only a scope (a relative cgroup path). The pass re-reads both trees
below that scope, so a missed, duplicated or reordered event cannot leave the mirror wrong.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field

import structlog

from bpffs_sync import dirfd, log
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.mirror.apply import ApplyResult, apply
from bpffs_sync.mirror.diff import OpKind, Plan, diff
from bpffs_sync.mirror.roots import Roots
from bpffs_sync.mirror.tree import ActualTree, Conflict, DesiredTree, Kind
from bpffs_sync.paths import Layout, RelPath, coalesce, display, mirrored_scope, share
from bpffs_sync.stats import Generations, LoadedStat

_log = log.get(__name__)
# A pass takes at most this many hinted scopes of one top-level cgroup (paths.share); the rest are
# handed back (PassResult.deferred) for the next pass, so one subtree's backlog cannot hold up
# a hint elsewhere for more than this share of a pass.
SCOPES_PER_GROUP = 128


@dataclass(slots=True)
class PassResult:
    reconcile_id: str
    scopes: list[RelPath]
    plan: Plan
    applied: ApplyResult
    seconds: float
    deferred: list[RelPath] = field(default_factory=list)  # hinted scopes left for the next pass (share)
    walked: int = 0  # cgroups the pass read (the cost of its desired side)

    @property
    def full(self) -> bool:
        return () in self.scopes

    @property
    def retry_scopes(self) -> list[RelPath]:
        """The scopes a retry must re-read: the cgroup of each failed op (level-triggered: the
        retry looks again, it does not replay the op)."""
        stats = {op.path: op for op in self.plan.ops if op.kind is OpKind.PIN}
        return coalesce([p[:-1] if p in stats else p for p in self.applied.failed])


class Reconciler:
    def __init__(self, layout: Layout, stats: dict[str, LoadedStat]) -> None:
        self.layout = layout
        self.stats = stats
        self.stat_names = tuple(stats)
        self.generations = Generations({name: s.map_id for name, s in stats.items()})
        self.pins = bpffs.PinJudge(self.generations.judge)
        self.roots = Roots(layout)  # held for one pass only: a held fd makes umount of either fs EBUSY
        self.mounts: set[RelPath] = set()  # mount points below the mirror root, logged once each

    def close(self) -> None:
        """Let go of the held root directories (they are let go after each pass anyway)."""
        self.roots.close()

    def normalise(self, scope: RelPath) -> RelPath | None:
        """The scope a pass must cover: None below a stat-shadowed name (nothing there is mirrored,
        paths.mirrored_scope), and for a removal the topmost cgroup that is gone (so every pin
        below it is seen, unpinned and forgotten)."""
        owned = mirrored_scope(scope, frozenset(self.stat_names))
        if not owned:
            return owned
        return cgroupfs.first_gone(self.layout, owned, self.roots.cgroup())

    def observe(self, scopes: list[RelPath]) -> tuple[Plan, set[int], int]:
        """The plan for the (normalised, coalesced) scopes, the live cgroup ids seen below them and
        how many cgroups were read.
        Scopes do not nest, so their trees only share ancestors, which both walks report alike."""
        desired: DesiredTree = {}
        actual: ActualTree = {}
        conflicts: list[Conflict] = []
        opaque: set[RelPath] = set()
        walked = 0
        for scope in scopes:
            view = cgroupfs.walk(self.layout, self.stat_names, scope, root_fd=self.roots.cgroup())
            desired.update(view.tree)
            walked += len(view.ids)
            conflicts.extend(view.conflicts)
            seen = bpffs.walk(self.layout, self.pins, scope, self.roots.mirror(create=False))
            actual.update(seen.tree)
            opaque |= view.opaque | seen.opaque
        live = {d.cgroup_id for d in desired.values() if d.kind is Kind.PIN}
        return diff(desired, actual, conflicts, opaque), live, walked

    def reconcile(self, *scopes: RelPath) -> PassResult:
        """One pass over the given scopes (none: the whole tree). One diff, one apply, one log line.
        Hinted scopes below a stat-shadowed name are dropped; beyond SCOPES_PER_GROUP of one
        top-level cgroup they are handed back in PassResult.deferred (the caller queues them)."""
        started = time.monotonic()
        # The caller's id when it bound one (the daemon's step: its failure line names this pass).
        rid = str(structlog.contextvars.get_contextvars().get("reconcile_id") or uuid.uuid4().hex[:12])
        with structlog.contextvars.bound_contextvars(reconcile_id=rid), contextlib.closing(self.roots):
            shadow = frozenset(self.stat_names)
            full: list[RelPath] = [()]
            wanted = [s for s in scopes if mirrored_scope(s, shadow) is not None] if scopes else full
            taken, deferred = share(wanted, SCOPES_PER_GROUP)
            todo = coalesce([n for s in taken if (n := self.normalise(s)) is not None])
            if not todo:  # every hint was below a shadowed name: nothing to read
                return PassResult(rid, [], Plan(), ApplyResult(), time.monotonic() - started, deferred)
            plan, live, walked = self.observe(todo)
            if todo == [()]:
                self.pins.forget_unseen()
            self._note_mounts(plan.mounts, full=todo == [()])
            applied = (apply(plan, self.layout, self.stats, live, self.roots, complete=todo == [()]) if plan
                       else ApplyResult())
            seconds = time.monotonic() - started
            if plan or applied.errors:
                _log.info("reconcile_pass", scope=display(todo[0]), scopes=len(todo), ops=len(plan.ops),
                          done=dict(applied.done), gone=applied.gone, errors=len(applied.errors),
                          seconds=round(seconds, 4))
            for c in plan.conflicts:
                _log.debug("name_conflict", path=display(c.path), cgroup_id=c.cgroup_id)
        return PassResult(rid, todo, plan, applied, seconds, deferred, walked)

    def _note_mounts(self, mounts: list[RelPath], *, full: bool) -> None:
        """Log each mount point below the mirror root once (a full pass forgets the unmounted)."""
        for path in mounts:
            if path not in self.mounts:
                _log.warning("mount_point_left_alone", path=display(path), mirror=self.layout.mirror,
                             detail=dirfd.MOUNTED)
        self.mounts = set(mounts) if full else self.mounts | set(mounts)
