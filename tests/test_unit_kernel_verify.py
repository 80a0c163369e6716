"""The kernel mirror's desired tree (backends/kernel_a1._kernel_desired) is pure: no root needed."""

from __future__ import annotations

import pytest

from bpffs_sync.backends.kernel_a1 import _kernel_desired
from bpffs_sync.libbpf import CgroupStatLinkDesc
from bpffs_sync.mirror.tree import Kind
from bpffs_sync.paths import RelPath

pytestmark = pytest.mark.unit


def link(link_id: int, name: str, cgroup_id: int) -> CgroupStatLinkDesc:
    return CgroupStatLinkDesc(link_id, 0, cgroup_id, name, 0, 0)


CGROUPS: dict[RelPath, int] = {(): 1, ("a",): 2, ("a", "x"): 3, ("a", "x", "deep"): 4, ("b",): 5,
                               ("b", "x"): 6, ("a", "y"): 7}


def test_files_where_links_cover_and_collisions_only_with_covering_names() -> None:
    """`hist` at a, `x` at b: a's subtree gets hist files; b/x collides with b's file `x` (a conflict,
    nothing below it judged), while a/x is an ordinary cgroup there (no link named x covers a)."""
    roots: dict[RelPath, list[CgroupStatLinkDesc]] = {("a",): [link(10, "hist", 2)], ("b",): [link(11, "x", 5)]}
    desired, conflicts, owner = _kernel_desired(sorted(CGROUPS), CGROUPS, roots)
    assert [c.path for c in conflicts] == [("b", "x")]
    files = {p: d.cgroup_id for p, d in desired.items() if d.kind is Kind.PIN}
    assert files == {("a", "hist"): 2, ("a", "x", "hist"): 3, ("a", "x", "deep", "hist"): 4,
                     ("a", "y", "hist"): 7, ("b", "x"): 5}
    assert {p for p, d in desired.items() if d.kind is Kind.DIR} == {(), ("a",), ("a", "x"), ("a", "x", "deep"),
                                                                     ("a", "y"), ("b",)}
    assert owner[("b", "x")] == 11 and owner[("a", "y", "hist")] == 10


def test_nested_links_both_files_below_the_inner_root() -> None:
    """A link at the root and another at a: a's subtree has both files, the rest only the root's."""
    roots: dict[RelPath, list[CgroupStatLinkDesc]] = {(): [link(1, "one", 1)], ("a",): [link(2, "two", 2)]}
    desired, conflicts, _ = _kernel_desired(sorted(CGROUPS), CGROUPS, roots)
    assert not conflicts
    assert ("a", "x", "two") in desired and ("b", "two") not in desired and ("b", "one") in desired
