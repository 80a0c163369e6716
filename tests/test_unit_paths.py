"""Naming rules and scope handling: pure, no root."""

from __future__ import annotations

import pytest

from bpffs_sync.mirror.daemon import HintQueue
from bpffs_sync.paths import Layout, coalesce, display, mirrored_scope, needs_dot_trick, parse_rel, valid_stat_name
from bpffs_sync.programs import CATALOGUE

pytestmark = pytest.mark.unit

NAMES = ["system.slice", "foo.service", "with space", "jöbs-日本", "x" * 255, "é" * 127, ".hidden", "a..b"]


@pytest.mark.parametrize("name", NAMES)
def test_names_are_mirrored_verbatim(name: str) -> None:
    """A cgroup name maps to the same bpffs name, byte for byte."""
    lay = Layout("/sys/fs/bpf", "/sys/fs/cgroup")
    assert lay.mirror_path(("jobs", name)) == f"/sys/fs/bpf/cgroup/jobs/{name}"
    assert parse_rel(display(("jobs", name))) == ("jobs", name)


def test_dot_rule() -> None:
    """Exactly the names bpffs' lookup refuses get the chmod-0 treatment."""
    assert needs_dot_trick("system.slice") and needs_dot_trick(".x")
    assert not needs_dot_trick("with space") and not needs_dot_trick("jobs")


def test_root_display() -> None:
    """The root of the mirror shows as '.' and parses back to ()."""
    assert display(()) == "."
    assert parse_rel(".") == () == parse_rel("/")


def test_stat_names() -> None:
    """Stat names are BPF program names: identifiers of at most 15 characters."""
    assert valid_stat_name("hist_oncpu") and valid_stat_name("memcg_histo")
    assert not valid_stat_name("a.b") and not valid_stat_name("x" * 16) and not valid_stat_name("1abc")
    assert all(valid_stat_name(name) for name in CATALOGUE), "every shipped stat has a usable file name"


def test_shadowed_scope_is_no_scope() -> None:
    """Below a cgroup named like a stat file nothing is mirrored: no scope (not the parent's)."""
    stats = frozenset({"hist_oncpu"})
    assert mirrored_scope(("jobs", "hist_oncpu", "x"), stats) is None
    assert mirrored_scope(("jobs", "a"), stats) == ("jobs", "a")


def test_coalesce_keeps_only_topmost() -> None:
    """A pass over a scope covers its subtree, so covered scopes are dropped."""
    assert coalesce([("a", "b"), ("a",), ("c",), ("a", "b", "c"), ("c",)]) == [("a",), ("c",)]
    assert coalesce([(), ("a",)]) == [()]


def test_hint_queue_dedups_and_full_absorbs() -> None:
    """Duplicate hints collapse; a full-resync request swallows pending scopes."""
    q: HintQueue[tuple[str, ...]] = HintQueue()
    q.put(("a",))
    q.put(("a",))
    assert q.take(0) == (False, [("a",)])
    q.put(("b",))
    q.put(None)
    q.put(("c",))
    assert q.take(0) == (True, [])
    assert q.take(0) == (False, [])
