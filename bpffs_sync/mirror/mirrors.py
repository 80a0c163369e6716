"""The trees a running daemon keeps in step: one Reconciler (and one CgroupWatcher) per tree.

The v2 tree is always there. v1 trees come from the `--v1` selection, resolved against the
hierarchies mounted now; refresh() re-discovers them (every full pass, and whenever the mount
table changes), adds a tree for a hierarchy that appeared and drops the tree of one that went:
its mirror is removed (every pin under it unpinned) and the stats-map entries of hierarchies that
no longer exist are forgotten (hierarchy ids are reused, and cgroup ids restart at 1 in a new one),
in every loaded stat once -- also the stats no tree uses any more, like a dropped hierarchy's.

A tree's watcher whose reader died (dead_watchers) is replaced by restart_watcher with a fresh
inotify instance; the daemon then runs a full pass (events may have been lost meanwhile).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bpffs_sync import log
from bpffs_sync.errors import Tampered
from bpffs_sync.loader import LoadedStat
from bpffs_sync.mirror import bpffs, forest
from bpffs_sync.mirror.apply import Budget
from bpffs_sync.mirror.forest import Selection, Tree
from bpffs_sync.mirror.reconciler import PassResult, Reconciler
from bpffs_sync.mirror.watch import CgroupWatcher
from bpffs_sync.paths import RelPath

_log = log.get(__name__)

TreeHint = tuple[str, RelPath]  # (tree key, scope)
Hint = Callable[[TreeHint | None], None]
Death = Callable[[str], None]


@dataclass(slots=True)
class Active:
    tree: Tree
    reconciler: Reconciler
    watcher: CgroupWatcher | None


class Mirrors:
    def __init__(self, base: Tree, selection: Selection | None, load: Callable[[str], LoadedStat],
                 hint: Hint, watch: bool, *, loaded: Mapping[str, LoadedStat],
                 on_death: Death | None = None) -> None:
        self.base = base
        self.selection = selection
        self._load = load
        self._loaded = loaded  # every stat loaded so far, by name (the daemon's registry)
        self._hint = hint
        self._on_death = on_death  # a watcher's reader died (wakes the daemon's supervision)
        self._watch = watch
        self.active: dict[str, Active] = {}
        self._live_hierarchies: frozenset[int] | None = None
        self._pending: list[str] = []

    # --- the set of trees

    def refresh(self) -> list[str]:
        """Bring the set of trees in line with the mounted hierarchies. Returns the keys of the
        trees added (each wants a full pass)."""
        hierarchies = forest.hierarchies()
        wanted = [self.base, *(self.selection.trees(self.base.layout, hierarchies) if self.selection else [])]
        by_key = {t.key: t for t in wanted}
        pending = self.selection.pending(hierarchies) if self.selection else []
        if pending != self._pending:
            self._pending = pending
            if pending:
                _log.warning("v1_not_mounted", selectors=pending)
        for key in list(self.active):
            old = self.active[key].tree
            new = by_key.get(key)
            if new is None or (new.layout, new.stats) != (old.layout, old.stats):
                self._drop(key)
        added = [t.key for t in wanted if t.key not in self.active]
        for key in added:
            self._add(by_key[key])
        self._sync_top(wanted)
        self._forget_gone({h.hierarchy_id for h in hierarchies})
        return added

    def _add(self, tree: Tree) -> None:
        stats = {name: self._load(name) for name in tree.stats}
        watcher = self._new_watcher(tree) if self._watch else None
        self.active[tree.key] = Active(tree, Reconciler(tree.layout, stats), watcher)
        if tree.hierarchy is not None:
            _log.info("tree_added", tree=tree.key, cgroup_root=tree.layout.cgroup_root,
                      hierarchy_id=tree.layout.hierarchy_id, stats=list(tree.stats))

    def _new_watcher(self, tree: Tree) -> CgroupWatcher:
        """A started watcher on a fresh inotify instance (stopped again if it could not start)."""
        key = tree.key
        watcher = CgroupWatcher(tree.layout.cgroup_root,
                                lambda rel: self._hint(None if rel is None else (key, rel)),
                                on_death=self._on_death)
        try:
            watcher.start()
        except BaseException:
            watcher.stop()
            raise
        return watcher

    # --- supervision

    def dead_watchers(self) -> dict[str, str]:
        """The trees whose watcher's reader died, with why."""
        return {key: reason for key, a in self.active.items()
                if a.watcher is not None and (reason := a.watcher.failure) is not None}

    def restart_watcher(self, key: str) -> None:
        """Replace the tree's watcher with a fresh one (a new inotify instance, every directory
        watched again), then the old one is stopped. When the new one cannot start, the tree
        keeps the old, dead one, so the next dead_watchers() names it again."""
        act = self.active[key]
        old, act.watcher = act.watcher, self._new_watcher(act.tree)
        if old is not None:
            old.stop()

    def _drop(self, key: str) -> None:
        act = self.active.pop(key)
        if act.watcher is not None:
            act.watcher.stop()
        act.reconciler.close()
        removed = bpffs.remove_tree(act.tree.layout.bpffs, act.tree.layout.mirror_parts, act.tree.layout.bpffs_dev)
        _log.info("tree_dropped", tree=key, removed=removed)

    def _sync_top(self, wanted: list[Tree]) -> None:
        """Keep <bpffs>/cgroup-v1 in step. With no v1 tree wanted, an entry there that is not ours
        (any user can plant one in the sticky bpffs root) is not this run's business: left alone."""
        desired = forest.top_desired(wanted)
        root, dev = self.base.layout.bpffs, self.base.layout.bpffs_dev
        try:
            actual = forest.top_actual(root, dev)
        except Tampered:
            if desired:
                raise
            return
        if not desired and not actual:
            return
        drift = forest.top_diff(desired, actual, prune=True)
        if drift:
            removed = forest.top_apply(root, drift, dev)
            _log.info("v1_top_synced", changes=len(drift), stale_removed=removed)

    def _forget_gone(self, live: set[int]) -> None:
        """Drop stats-map entries of v1 hierarchies that are gone from every loaded stat, once per
        change of the set (a failure leaves the set unrecorded, so the next refresh tries again)."""
        ids = frozenset(live)
        if ids == self._live_hierarchies:
            return
        for name, loaded in self._loaded.items():
            n = loaded.forget_hierarchies_except(ids)
            if n:
                _log.info("stats_forgotten", stat=name, entries=n)
        self._live_hierarchies = ids

    # --- passes

    def reconcile(self, key: str, scopes: list[RelPath], *, budget: Budget | None = None,
                  stop: threading.Event | None = None, preempt: Callable[[], bool] | None = None) -> PassResult | None:
        act = self.active.get(key)
        return None if act is None else act.reconciler.reconcile(*scopes, budget=budget, stop=stop, preempt=preempt)

    def request_deep(self) -> None:
        """Every tree's next full pass re-walks its mirror (SIGHUP)."""
        for act in self.active.values():
            act.reconciler.request_deep()

    def resync_watches(self) -> None:
        """Every tree's watch set; one tree's failure does not spare the others (the first
        failure is raised once all were tried)."""
        first: Exception | None = None
        for act in self.active.values():
            if act.watcher is not None:
                try:
                    act.watcher.resync()
                except Exception as err:  # raised below, after the other trees
                    first = first or err
        if first is not None:
            raise first

    @property
    def watch_count(self) -> int:
        return sum(a.watcher.watch_count for a in self.active.values() if a.watcher is not None)

    @property
    def overflows(self) -> int:
        return sum(a.watcher.overflows for a in self.active.values() if a.watcher is not None)

    def describe(self) -> dict[str, dict[str, object]]:
        return {key: {"cgroup_root": a.tree.layout.cgroup_root, "hierarchy_id": a.tree.layout.hierarchy_id,
                      "stats": list(a.tree.stats),
                      "watches": a.watcher.watch_count if a.watcher is not None else 0,
                      "overflows": a.watcher.overflows if a.watcher is not None else 0}
                for key, a in self.active.items()}

    def close(self) -> None:
        for act in self.active.values():
            if act.watcher is not None:
                act.watcher.stop()
            act.reconciler.close()
