"""Finding 1: the subtree walks (populate on link create, depopulate on detach, mirror enable)
run outside cgroup_mutex, so a mkdir elsewhere does not wait for a whole walk, and a mkdir or
rmdir racing a walk is handled exactly once: no missing file, no double file, no leaked entry.

No timing is asserted: the first test checks an ordering (a mkdir elsewhere returns while the
populate is visibly unfinished, which cgroup_mutex held across the walk made impossible); the
stall in milliseconds is measured by kernel-approach1/bench (`make kernel-bench`)."""

from __future__ import annotations

import os

import pytest
from conftest import link_desc
from series_fixtures import in_thread, joined_fd, make_flat, race_create_and_detach
from test_cgroup_stat import cgroups_under, mirror_of, stat_files

from bpffs_sync.backends import kernel_a1

NAME = "walk"
# Tree sizes: a populate of many steps under TCG. BPFFS_SYNC_TEST_SCALE shrinks them for the debug
# kernel (kernel-approach2/scripts/debug-test.sh), where every step is that much slower already.
SCALE = float(os.environ.get("BPFFS_SYNC_TEST_SCALE", "1"))
WIDE = max(100, int(4000 * SCALE))
CHURNED = max(100, int(2000 * SCALE))
ATTEMPTS = 6


def test_mkdir_elsewhere_returns_while_a_populate_runs(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """A mkdir outside the link's subtree, made once the populate has begun, returns before the
    populate has reached the subtree's last cgroup."""
    tree = os.path.join(cg, "tree")
    make_flat(tree, WIDE)
    first = os.path.join(mirror_of(mirror_fs, tree), NAME)
    last = os.path.join(mirror_of(mirror_fs, tree), f"c{WIDE - 1}", NAME)
    t, out = in_thread(lambda: stat.attach(tree, NAME))
    while not os.path.exists(first):
        assert t.is_alive() or os.path.exists(first), "link create returned without its first file"
    os.mkdir(os.path.join(cg, "elsewhere"))
    unfinished = not os.path.exists(last)
    link_fds.append(joined_fd(t, out))
    assert unfinished, "the mkdir elsewhere waited for the whole populate (a walk under cgroup_mutex)"
    assert link_desc(link_fds[-1]).nr_files == WIDE + 1


def mirror_dirs(mirror_fs: str, tree: str) -> set[str]:
    """The mirror's directories at and below tree's, as cgroup paths (like cgroups_under)."""
    top = os.path.join(mirror_fs, "cgroup")
    base = mirror_of(mirror_fs, tree)
    return {os.path.relpath(d, top) for d, _, _ in os.walk(base)} if os.path.isdir(base) else set()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_walks_racing_mkdir_and_rmdir_handle_each_cgroup_once(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, seed: int
) -> None:
    """mkdir and rmdir all over the subtree while the link is created and while it is detached:
    afterwards the files are exactly the live cgroups (none missing, none for a removed cgroup,
    nr_files equal), and after detach nothing is left and the link goes with its fd."""
    tree = os.path.join(cg, "tree")
    make_flat(tree, CHURNED)

    def created(fd: int) -> int:
        live = cgroups_under(tree)
        assert stat_files(mirror_fs, NAME) == live
        assert mirror_dirs(mirror_fs, tree) == live
        desc = link_desc(fd)
        assert desc.nr_files == len(live)
        return desc.link_id

    def detached(fd: int) -> None:
        assert stat_files(mirror_fs, NAME) == set()
        assert mirror_dirs(mirror_fs, tree) == set()
        assert link_desc(fd).nr_files == 0

    race_create_and_detach(tree, seed, ATTEMPTS, attach=lambda: stat.attach(tree, NAME), created=created,
                           detached=detached)


def test_a_mkdir_under_a_populating_link_gets_the_whole_path(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """A nested mkdir at the far end of a subtree the walk has not reached yet: the new cgroup and
    each of its ancestors get the link's file once, and nr_files counts each once."""
    tree = os.path.join(cg, "tree")
    make_flat(tree, WIDE)
    first = os.path.join(mirror_of(mirror_fs, tree), NAME)
    last = os.path.join(mirror_of(mirror_fs, tree), f"c{WIDE - 1}", NAME)
    deep = os.path.join(tree, f"c{WIDE - 1}", "x", "y")
    t, out = in_thread(lambda: stat.attach(tree, NAME))
    while not os.path.exists(first):
        assert t.is_alive() or os.path.exists(first), "link create returned without its first file"
    unreached = not os.path.exists(last)
    os.makedirs(deep)
    link_fds.append(joined_fd(t, out))
    assert unreached, "the populate was over before the mkdir: the race was not exercised"
    assert stat_files(mirror_fs, NAME) == cgroups_under(tree)
    assert link_desc(link_fds[-1]).nr_files == WIDE + 3
