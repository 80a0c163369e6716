"""Fairness of hinted passes: a hint is scoped to what changed (never widened by a stat-named
ancestor), and one subtree's backlog takes a bounded share of a pass (reconciler.SCOPES_PER_GROUP).
Asserted on the pass's scopes and counts, not on time."""

from __future__ import annotations

import os

from helpers import Mirror

from bpffs_sync.mirror.reconciler import SCOPES_PER_GROUP, Reconciler
from bpffs_sync.paths import mirrored_scope, share


def test_shadowed_hint_is_dropped_not_widened() -> None:
    """A hint at or below a stat-named cgroup names nothing mirrored: no scope, not its parent's."""
    stats = frozenset({"hist_oncpu"})
    assert mirrored_scope(("d", "hist_oncpu", "x"), stats) is None
    assert mirrored_scope(("d", "hist_oncpu"), stats) is None
    assert mirrored_scope(("d", "x"), stats) == ("d", "x")


def test_share_bounds_each_top_level_group() -> None:
    """At most per_group scopes of one top-level cgroup are taken, oldest first; others all go."""
    backlog = [("d", f"x{i}") for i in range(10)]
    taken, deferred = share([*backlog, ("e", "y")], 3)
    assert taken == [("d", "x0"), ("d", "x1"), ("d", "x2"), ("e", "y")]
    assert deferred == backlog[3:]
    assert share([("d",), ()], 1) == ([()], [])


def test_churn_below_stat_named_cgroup_does_not_walk_it(mirror: Mirror, rec: Reconciler) -> None:
    """Hints below d/hist_oncpu next to a hint for a sibling: the pass walks the sibling only."""
    for i in range(40):
        os.makedirs(mirror.cg(f"d/hist_oncpu/x{i}"))
    os.makedirs(mirror.cg("d/other/y"))
    os.mkdir(mirror.cg("e"))
    full = rec.reconcile()
    assert full.walked == 5  # root, d, d/other, d/other/y, e: d/hist_oncpu is a conflict, not entered
    res = rec.reconcile(("d", "hist_oncpu", "x3"), ("d", "hist_oncpu"), ("e",))
    assert res.scopes == [("e",)]
    assert res.walked == 1
    alone = rec.reconcile(("d", "hist_oncpu", "x5"))
    assert alone.scopes == [] and alone.walked == 0 and not alone.full
    os.mkdir(mirror.cg("d/other/z"))
    sibling = rec.reconcile(("d", "hist_oncpu", "x7"), ("d", "other", "z"))
    assert sibling.scopes == [("d", "other", "z")] and sibling.walked == 1
    assert os.path.exists(mirror.stat_path("d/other/z"))
    assert os.path.exists(mirror.stat_path("d"))  # the stat file d/hist_oncpu is still the stat's


def test_backlog_in_one_subtree_leaves_room_for_another(mirror: Mirror, rec: Reconciler) -> None:
    """A backlog of hints under d beyond the share is handed back; e's hint is in this pass."""
    n = SCOPES_PER_GROUP + 20
    os.mkdir(mirror.cg("d"))
    for i in range(n):
        os.mkdir(mirror.cg(f"d/c{i}"))
    os.mkdir(mirror.cg("e"))
    rec.reconcile(("d",))  # d's own directory exists, the hints below are what is pending
    hints = [("d", f"c{i}") for i in range(n)]
    res = rec.reconcile(*hints, ("e",))
    assert ("e",) in res.scopes
    assert len(res.scopes) == SCOPES_PER_GROUP + 1 and res.walked == SCOPES_PER_GROUP + 1
    assert res.deferred == hints[SCOPES_PER_GROUP:]
    assert os.path.exists(mirror.stat_path("e"))
    rest = rec.reconcile(*res.deferred)
    assert rest.deferred == [] and len(rest.scopes) == 20
    assert all(os.path.exists(mirror.stat_path(f"d/c{i}")) for i in range(n))
