"""One reconcile pass: desired (cgroupfs walk) vs actual (bpffs walk + link info) -> plan -> apply.

Level-triggered: a request is only a scope (a relative cgroup path). A scoped pass re-reads both
trees below that scope, so a missed, duplicated or reordered event cannot leave the mirror wrong.

A full pass reads the desired side in one read of a BPF cgroup iterator (mirror/cgtree.py: every
cgroup's id, parent and name; cgroupfs.walk when it is unavailable). Its actual side is the bpffs
walk on a *deep* pass -- the first, and every deep_every-th full pass after it -- and otherwise the
mirror as this reconciler left it: the last deep walk with every op applied since, and the scopes
of scoped passes re-read (the daemon's own pins are trusted between deep verifies, so drift made
behind its back in a part no hint touches is healed by the next deep pass, not the next pass).
A full pass whose tree has the digest of the last one's (computed by the iterator program over
every record), with nothing changed in the mirror since that pass ended in step, is a no-op
without copying the records, building the tree or a diff.

A pass given a Budget (the daemon's, once its first full round is done) applies a bounded slice of
each top-level subtree's ops (apply.Budget); the scopes of a subtree that was cut are handed back
in PassResult.deferred, and are re-read from bpffs next time (the cache does not know what a cut
left). Given the daemon's stop event, a pass ends between two steps when it is set
(interrupt.Interrupted, raised to the caller; the cache is dropped: the next pass is deep).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bpffs_sync import dirfd, interrupt, log
from bpffs_sync.loader import Generations, LoadedStat
from bpffs_sync.mirror import bpffs, cgroupfs, cgtree
from bpffs_sync.mirror.apply import ApplyResult, Budget, apply, group_of
from bpffs_sync.mirror.cache import MirrorCache
from bpffs_sync.mirror.diff import OpKind, Plan, diff
from bpffs_sync.mirror.roots import Roots
from bpffs_sync.mirror.tree import ActualTree, Conflict, DesiredTree, DesiredView, Kind, under
from bpffs_sync.paths import Layout, RelPath, coalesce, display, mirrored_scope, share

_log = log.get(__name__)
# A pass takes at most this many hinted scopes of one top-level cgroup (paths.share); the rest are
# handed back (PassResult.deferred) for the next pass, so one subtree's backlog cannot hold up
# a hint elsewhere for more than this share of a pass.
SCOPES_PER_GROUP = 128
DEEP_EVERY = 10  # every 10th full pass re-walks bpffs (with the default 30 s interval: every 5 minutes)
DIRTY_MAX = 4096  # scopes re-read since the last full pass beyond which the next one is deep


@dataclass(slots=True)
class PassResult:
    reconcile_id: str
    scopes: list[RelPath]
    plan: Plan
    applied: ApplyResult
    seconds: float
    deferred: list[RelPath] = field(default_factory=list)  # hinted scopes left for the next pass (share)
    walked: int = 0  # cgroups the pass read (the cost of its desired side)
    cached: bool = False  # a full pass whose actual side was the cached mirror (not a deep one)
    tree_source: str = "walk"  # how the desired side was read: "walk" (cgroupfs) or "iterator"

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
    def __init__(self, layout: Layout, stats: dict[str, LoadedStat], *, deep_every: int = DEEP_EVERY,
                 tree_reader: bool = True) -> None:
        """deep_every: 1 re-walks bpffs in every full pass (as verify does); tree_reader: False
        reads the desired side by walking cgroupfs (what every pass did before cgtree)."""
        self.layout = layout
        self.deep_every = deep_every
        self._use_reader = tree_reader
        self._reader_failed = False
        self._actual: MirrorCache | None = None  # the mirror as of the last deep walk + ops since
        self._since_deep = 0  # full passes since the last deep one
        self._dirty: set[RelPath] = set()  # scopes of scoped passes whose ops did not all land
        self._digest: int | None = None  # of the last full pass's tree records (cgtree.Tree.digest)
        self._clean = False  # the cache is in step with that tree (nothing changed since)
        self._opaque: set[RelPath] = set()  # the parts of the mirror the cache does not know
        self.stats = stats
        self.stat_names = tuple(stats)
        self.generations = Generations({name: s.map_id for name, s in stats.items()})
        self.pins = bpffs.PinJudge(self.generations.judge)
        self.roots = Roots(layout)  # held for one pass only: a held fd makes umount of either fs EBUSY
        self.mounts: set[RelPath] = set()  # mount points below the mirror root, logged once each
        self._dirs: dirfd.DirCache | None = None  # the cgroup side's directories, for one pass
        self._dirs_limit = 0  # its size (dirfd.cache_limit lists /proc/self/fd: once per full pass, not per pass)
        self._deep_next = False  # the next full pass re-walks bpffs whatever the count (request_deep)
        self._todo: list[RelPath] = []  # the scopes of the pass in progress

    def request_deep(self) -> None:
        """Make the next full pass a deep one (SIGHUP: the administrator distrusts the cache)."""
        self._deep_next = True

    def close(self) -> None:
        """Let go of the held directories (they are let go after each pass anyway)."""
        if self._dirs is not None:
            self._dirs.close()
            self._dirs = None
        self.roots.close()

    def normalise(self, scope: RelPath) -> RelPath | None:
        """The scope a pass must cover: None below a stat-shadowed name (nothing there is mirrored,
        paths.mirrored_scope), and for a removal the topmost cgroup that is gone (so every pin
        below it is seen, unpinned and forgotten)."""
        owned = mirrored_scope(scope, frozenset(self.stat_names))
        if not owned:
            return owned
        return cgroupfs.first_gone(self.layout, owned, self.roots.cgroup(), self._cgroup_dirs())

    def _cgroup_dirs(self) -> dirfd.DirCache:
        """The cgroup tree's directories opened so far in this pass (normalise and the walks of
        many scopes below one parent open it once)."""
        if self._dirs is None:
            self._dirs_limit = self._dirs_limit or dirfd.cache_limit()
            self._dirs = dirfd.DirCache(self.roots.cgroup(), self.layout.cgroup_root, self._dirs_limit)
        return self._dirs

    def _trusted(self, scope: RelPath) -> bool:
        """Whether the cache knows scope's part of the mirror (else a scoped pass walks bpffs)."""
        if self._actual is None:
            return False
        n = len(scope)
        return not any(d[:n] == scope or under(scope, {d}) for d in self._dirty | self._opaque)

    def observe(self, scopes: list[RelPath], budget: Budget | None = None
                ) -> tuple[Plan, set[int], int, dict[RelPath, ActualTree] | None, list[RelPath]]:
        """The plan for the (normalised, coalesced) scopes, the live cgroup ids seen below them,
        how many cgroups were read, each scope's bpffs walk (None when part of one was opaque),
        and the scopes left for a later pass. A scope the cache knows is taken from it (the
        daemon trusts its own pins between deep passes); the others are walked. Scopes do not
        nest, so their trees only share ancestors, which both walks report alike. With a budget,
        the walks of one top-level subtree take about budget.walk_seconds: a walk past it stops
        (what it did not visit is opaque to this pass and left for a later one, by the
        directories it did not enter), and its subtree's scopes not yet walked are left whole."""
        desired: DesiredTree = {}
        actual: ActualTree = {}
        conflicts: list[Conflict] = []
        opaque: set[RelPath] = set()
        walked = 0
        fresh: dict[RelPath, ActualTree] = {}
        later: list[RelPath] = []
        spent: dict[str, float] = {}
        dirs = self._cgroup_dirs()
        for scope in scopes:
            group, began, deadline = group_of(scope), time.monotonic(), 0.0
            if budget is not None:
                if spent.get(group, 0.0) >= budget.walk_seconds:
                    later.append(scope)
                    continue
                deadline = began + budget.walk_seconds - spent.get(group, 0.0)
            view = cgroupfs.walk(self.layout, self.stat_names, scope, root_fd=self.roots.cgroup(), dirs=dirs,
                                 deadline=deadline)
            desired.update(view.tree)
            walked += len(view.ids)
            conflicts.extend(view.conflicts)
            opaque |= view.opaque
            later += view.cut
            if self._actual is not None and self._trusted(scope):
                actual.update(self._actual.scope(scope))
            else:
                seen = bpffs.walk(self.layout, self.pins, scope, self.roots.mirror(create=False), deadline=deadline)
                actual.update(seen.tree)
                fresh[scope] = seen.tree
                opaque |= seen.opaque
                later += seen.cut
            spent[group] = spent.get(group, 0.0) + time.monotonic() - began
        live = {d.cgroup_id for d in desired.values() if d.kind is Kind.PIN}
        return diff(desired, actual, conflicts, opaque), live, walked, None if opaque else fresh, later

    def reconcile(self, *scopes: RelPath, budget: Budget | None = None,
                  stop: threading.Event | None = None, preempt: Callable[[], bool] | None = None) -> PassResult:
        """One pass over the given scopes (none: the whole tree). One diff, one apply, one log line.
        Hinted scopes below a stat-shadowed name are dropped; beyond SCOPES_PER_GROUP of one
        top-level cgroup they are handed back in PassResult.deferred (the caller queues them), and
        so are the scopes of a subtree whose budget ran out. stop: set, the pass ends between two
        steps with interrupt.Interrupted; preempt true, with interrupt.Preempted."""
        self._todo = []
        with interrupt.stopping(stop, preempt):
            try:
                return self._reconcile(scopes, budget)
            except interrupt.Interrupted:
                # What landed of this pass is unknown: its scopes are re-read from bpffs when next
                # used (a full pass's: the next full pass is deep).
                if self._todo == [()] or not self._todo:
                    self._actual = None
                else:
                    self._dirty.update(self._todo)
                self._clean = False
                raise

    def _reconcile(self, scopes: tuple[RelPath, ...], budget: Budget | None) -> PassResult:
        started = time.monotonic()
        # The caller's id when it bound one (the daemon's step: its failure line names this pass).
        rid = str(structlog.contextvars.get_contextvars().get("reconcile_id") or uuid.uuid4().hex[:12])
        with structlog.contextvars.bound_contextvars(reconcile_id=rid), contextlib.closing(self.roots), \
                contextlib.closing(self):
            shadow = frozenset(self.stat_names)
            full: list[RelPath] = [()]
            wanted = [s for s in scopes if mirrored_scope(s, shadow) is not None] if scopes else full
            taken, deferred = share(wanted, SCOPES_PER_GROUP)
            normal: list[RelPath] = []
            for scope in coalesce(taken):  # nested hints (a chain being made) cost one normalise
                # (safe: an ancestor's first gone cgroup is at or above any descendant's)
                interrupt.check()  # each costs opens down to the scope (a user's deep chain)
                if (n := self.normalise(scope)) is not None:
                    normal.append(n)
            todo = self._todo = coalesce(normal)
            if not todo:  # every hint was below a shadowed name: nothing to read
                return PassResult(rid, [], Plan(), ApplyResult(), time.monotonic() - started, deferred)
            keep: MirrorCache | None = None
            fresh: dict[RelPath, ActualTree] | None = None
            if todo == [()]:
                self._dirs_limit = 0  # RLIMIT_NOFILE is read again
                plan, live, walked, cached, source, keep = self._observe_full()
            else:
                plan, live, walked, fresh, later = self.observe(todo, budget)
                cached, source = False, "walk"
                deferred += later  # the walks' deadlines: what they did not read
            self._note_mounts(plan.mounts, full=todo == [()] and not cached)  # a deep pass sees every mount
            applied = (apply(plan, self.layout, self.stats, live, self.roots, complete=todo == [()],
                             cgroup_dirs=self._cgroup_dirs(), budget=budget) if plan else ApplyResult())
            self._remember(todo, keep, fresh, plan, applied)
            if applied.cut:  # the rest of those subtrees: the next pass (level-triggered: it re-reads them)
                deferred += ([(g,) for g in sorted(applied.cut) if g] if todo == [()]
                             else [s for s in todo if group_of(s) in applied.cut])
            seconds = time.monotonic() - started
            if plan or applied.errors:
                _log.info("reconcile_pass", scope=display(todo[0]), scopes=len(todo), ops=len(plan.ops),
                          done=dict(applied.done), gone=applied.gone, errors=len(applied.errors),
                          left=applied.left, cut=sorted(applied.cut), deferred=len(deferred),
                          seconds=round(seconds, 4))
            for c in plan.conflicts:
                _log.debug("name_conflict", path=display(c.path), cgroup_id=c.cgroup_id)
        return PassResult(rid, todo, plan, applied, seconds, deferred, walked, cached, source)

    def _note_mounts(self, mounts: list[RelPath], *, full: bool) -> None:
        """Log each mount point below the mirror root once (a full pass forgets the unmounted)."""
        for path in mounts:
            if path not in self.mounts:
                _log.warning("mount_point_left_alone", path=display(path), mirror=self.layout.mirror,
                             detail=dirfd.MOUNTED)
        self.mounts = set(mounts) if full else self.mounts | set(mounts)

    # --- the full pass: the tree from one iterator read, the mirror from the cache between deep walks

    def _tree(self, deep: bool) -> tuple[DesiredView | None, int | None, int, str]:
        """The whole desired tree: (view, the records' digest or None, cgroups, source). The view
        is None when the tree's digest equals the last pass's and the cache is in step with it (a
        no-op: nothing to build, nothing to diff) and the pass is not deep."""
        reader = cgtree.shared() if self._use_reader and not self._reader_failed else None
        if reader is not None:
            try:
                noop = not deep and self._clean and not self._dirty
                tree = reader.read(self.roots.cgroup(), self.layout.cgroup_root,
                                   self._digest if noop else None)
                if tree.records is None:
                    return None, tree.digest, tree.count, "iterator"
                view = cgroupfs.view_from_records(self.layout, self.stat_names, tree.records)
                return view, tree.digest, len(view.ids), "iterator"
            except (cgtree.TreeUnavailable, cgroupfs.TornTree) as err:
                self._reader_failed = True
                _log.warning("cgroup_tree_fallback", tree=self.layout.mirror, error=str(err),
                             fallback="cgroupfs walk")
        view = cgroupfs.walk(self.layout, self.stat_names, (), root_fd=self.roots.cgroup())
        return view, None, len(view.ids), "walk"

    def _observe_full(self) -> tuple[Plan, set[int], int, bool, str, MirrorCache]:
        """(plan, live ids, cgroups read, cached, source, the mirror as the plan finds it)."""
        deep = (self._actual is None or self._deep_next or self._since_deep + 1 >= self.deep_every
                or len(self._dirty) > DIRTY_MAX)
        view, digest, count, source = self._tree(deep)
        if view is None and self._actual is not None:  # no-op
            self._since_deep += 1
            return Plan(), set(), count, True, source, self._actual
        assert view is not None
        mroot = self.roots.mirror(create=False)
        if deep or self._actual is None:
            seen = bpffs.walk(self.layout, self.pins, (), mroot)
            self.pins.forget_unseen()
            self._since_deep, self._deep_next = 0, False
            cache, opaque = MirrorCache(seen.tree), seen.opaque
        else:
            self._since_deep += 1
            cache, opaque = self._actual, self._refresh_dirty(self._actual, mroot)
        self._dirty.clear()
        self._digest = digest
        self._opaque = opaque  # unread parts of the mirror (too deep, transient errors): left alone till deep
        live = {d.cgroup_id for d in view.tree.values() if d.kind is Kind.PIN}
        plan = diff(view.tree, cache.tree, view.conflicts, view.opaque | opaque)
        return plan, live, count, not deep, source, cache

    def _refresh_dirty(self, cache: MirrorCache, mroot: int | None) -> set[RelPath]:
        """Re-read from bpffs the scopes whose ops did not all land; the mirror's opaque parts."""
        if not self._dirty:
            return self._opaque
        tops = coalesce(list(self._dirty))
        opaque = {o for o in self._opaque if not under(o, set(tops))}
        for scope in tops:
            seen = bpffs.walk(self.layout, self.pins, scope, mroot)
            cache.replace_scope(scope, seen.tree)
            opaque |= seen.opaque
        return opaque

    def _remember(self, todo: list[RelPath], keep: MirrorCache | None, fresh: dict[RelPath, ActualTree] | None,
                  plan: Plan, applied: ApplyResult) -> None:
        """Keep the cache in step with what this pass saw and did: a full pass's mirror with its
        ops applied, or nothing when one did not land (the next full pass is deep); a scoped
        pass's fresh walks and ops, or its scopes to re-read when an op did not land."""
        landed = not (applied.errors or applied.gone or applied.skipped)
        cut = applied.cut  # subtrees whose ops did not all run (budget): re-read from bpffs when next used
        done = [op for op in plan.ops if group_of(op.path) not in cut] if cut else plan.ops
        if todo == [()]:
            self._actual = keep if landed else None
            if self._actual is not None:
                self._actual.record(done)
                self._dirty.update((g,) if g else () for g in cut)
            self._clean = self._actual is not None and not plan.mounts and not cut
            return
        if self._actual is None:
            return
        if plan.ops:
            self._clean = False
        if landed and fresh is not None:
            for scope, seen in fresh.items():
                if group_of(scope) not in cut:
                    self._actual.replace_scope(scope, seen)
            self._actual.record(done)
            self._dirty.update(s for s in todo if group_of(s) in cut)
        else:
            self._dirty.update(todo)
