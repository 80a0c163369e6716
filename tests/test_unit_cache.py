"""MirrorCache (mirror/cache.py): the reconciler's mirror between deep passes. Pure, no root."""

from __future__ import annotations

from bpffs_sync.mirror.cache import MirrorCache
from bpffs_sync.mirror.diff import Op, OpKind, Reason, diff
from bpffs_sync.mirror.tree import Actual, Desired, Kind

DIR = Actual(Kind.DIR, mode=0o755)


def _pin(cgid: int) -> Actual:
    return Actual(Kind.PIN, 0o444, 0, cgid)


def _cache() -> MirrorCache:
    return MirrorCache({(): DIR, ("a",): DIR, ("a", "s"): _pin(2), ("a", "b"): DIR, ("a", "b", "s"): _pin(3),
                        ("c",): DIR, ("c", "s"): _pin(4)})


def test_scope_is_the_way_down_and_the_subtree() -> None:
    """A scope's entries: its ancestors and everything below it, nothing beside it."""
    got = _cache().scope(("a", "b"))
    assert got == {(): DIR, ("a",): DIR, ("a", "b"): DIR, ("a", "b", "s"): _pin(3)}
    assert _cache().scope(("a", "x")) == {(): DIR, ("a",): DIR}
    assert _cache().scope(("a", "s", "x")) == {(): DIR, ("a",): DIR, ("a", "s"): _pin(2)}  # a file on the way


def test_record_applies_a_plan() -> None:
    """After record(plan), diffing the same desired tree again gives an empty plan."""
    cache = _cache()
    desired = {(): Desired(Kind.DIR), ("a",): Desired(Kind.DIR), ("a", "s"): Desired(Kind.PIN, 2, "s", 0o444),
               ("d",): Desired(Kind.DIR), ("d", "s"): Desired(Kind.PIN, 5, "s", 0o444)}
    plan = diff(desired, cache.tree)
    assert plan
    cache.record(plan.ops)
    assert not diff(desired, cache.tree)
    assert ("a", "b", "s") not in cache.tree and cache.scope(("a",)) == {
        (): DIR, ("a",): DIR, ("a", "s"): _pin(2)}


def test_drop_and_replace_scope() -> None:
    """A removed directory goes with everything below it; a fresh walk replaces a scope."""
    cache = _cache()
    cache.record([Op(OpKind.REMOVE, ("a",), Reason.STALE)])
    assert set(cache.tree) == {(), ("c",), ("c", "s")}
    cache.replace_scope(("c",), {(): DIR, ("c",): DIR, ("c", "t"): _pin(9)})
    assert cache.scope(("c",)) == {(): DIR, ("c",): DIR, ("c", "t"): _pin(9)}
    cache.record([Op(OpKind.CHMOD, ("c",), Reason.BAD_MODE, mode=0o700)])
    assert cache.tree[("c",)].mode == 0o700 and cache.tree[("c",)].kind is Kind.DIR
