"""`bpffs-sync run/verify/clean --approach 2` against the patched kernel, as a user runs them: run
attaches one link per stat (a rerun adopts it, a stale program is swapped in place), verify exits 0
in sync and 1 with --json drift by reason, clean detaches and the files go."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import CGROUP2, FILE, NAME, cgroups_under, files_under, make_tree

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a2
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup

EXE = os.path.join(os.path.dirname(sys.executable), "bpffs-sync")

# Each CLI call loads the stats' programs, a minute or more under TCG on a loaded host, and a test
# here makes several: pyproject's 300 s per test cut two off on 2026-12-07 (five guests on 2 cores).
pytestmark = pytest.mark.timeout(1800)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, check=False, timeout=900)


def cli_json(*args: str) -> tuple[int, dict[str, Any]]:
    res = cli(*args, "--json")
    assert res.stdout, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return res.returncode, doc


def test_run_verify_clean(pins_fs: str, cg: str) -> None:
    """run --approach 2 makes the files (and adopts on a rerun), verify is in sync, clean removes them."""
    make_tree(cg, "a/b")
    code, doc = cli_json("run", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert code == 0
    assert [link["action"] for link in doc["links"]] == ["created"]
    assert files_under(cg) == cgroups_under(cg)
    code, doc = cli_json("run", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert (code, [link["action"] for link in doc["links"]]) == (0, ["adopted"])
    os.mkdir(os.path.join(cg, "later"))
    code, doc = cli_json("verify", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert (code, doc["in_sync"], doc["drift"]) == (0, True, {})
    res = cli("clean", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert res.returncode == 0, res.stderr
    assert files_under(cg) == set()
    assert libbpf.cgroupfs_stat_links() == []


def test_stale_program_is_drift_until_run_swaps_it(pins_fs: str, cg: str) -> None:
    """A new stats-map generation (its pin replaced) leaves the link running the old program: verify
    exits 1 with drift 'stale_program'; run swaps the program in place (updated, same link, same
    files) and verify is in sync again."""
    code, doc = cli_json("run", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert code == 0
    link_id = doc["links"][0]["link_id"]
    inode = os.stat(os.path.join(cg, FILE)).st_ino
    os.unlink(os.path.join(pins_fs, "bpffs-sync", NAME, lookup(NAME).map_name()))
    with kernel_a2.CgroupfsStat(Layout(pins_fs, CGROUP2), lookup(NAME)):
        pass  # loads and pins a new stats map: a new generation
    code, doc = cli_json("verify", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert (code, doc["in_sync"], list(doc["drift"])) == (1, False, ["stale_program"])
    code, doc = cli_json("run", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert (code, doc["links"][0]["action"], doc["links"][0]["link_id"]) == (0, "updated", link_id)
    assert os.stat(os.path.join(cg, FILE)).st_ino == inode
    code, doc = cli_json("verify", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert (code, doc["in_sync"]) == (0, True)


def test_both_approaches_side_by_side(pins_fs: str, cg: str) -> None:
    """One kernel, both series: an Approach 2 link is not an Approach 1 link to `--kernel` (its verify
    stays in sync, its clean leaves the Approach 2 files), and the reverse."""
    from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

    make_tree(cg, "a")
    code, _ = cli_json("run", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
    assert code == 0
    a2_ids = {d.link_id for d in libbpf.cgroupfs_stat_links()}
    mirror = mount_bpffs()
    try:
        code, doc = cli_json("run", "--kernel", "--bpffs", mirror, "--cgroup-root", cg)
        assert code == 0 and doc["mode"] == "kernel"
        assert {d.link_id for d in libbpf.cgroup_stat_links()}.isdisjoint(a2_ids)
        code, doc = cli_json("verify", "--kernel", "--bpffs", mirror)
        assert (code, doc["in_sync"], [x["name"] for x in doc["links"]]) == (0, True, [NAME]), doc
        code, doc = cli_json("verify", "--approach", "2", "--bpffs", pins_fs, "--cgroup-root", cg)
        assert (code, doc["in_sync"]) == (0, True), doc
        res = cli("clean", "--kernel", "--bpffs", mirror, "--cgroup-root", cg)
        assert res.returncode == 0, res.stderr
        assert {d.link_id for d in libbpf.cgroupfs_stat_links()} == a2_ids
        assert files_under(cg) == cgroups_under(cg)
    finally:
        from bpffs_sync.backends import kernel_a1

        kernel_a1.detach_all()
        umount_bpffs(mirror)


def test_link_limit_on_the_default_hierarchy_is_joint_with_approach_1(stat: kernel_a2.CgroupfsStat, pins_fs: str,
                                                                       cg: str, link_fds: list[int]) -> None:
    """The comparison image carries both placements: on the default hierarchy, Approach 1's links and
    Approach 2's share the limit of 64, so no cgroup gets more than 64 stat files (v1 of the series:
    64 of each, 128)."""
    from bpffs_sync import series
    from bpffs_sync.backends import kernel_a1
    from bpffs_sync.errors import LibbpfError
    from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

    if not series.carried().approach1:
        pytest.skip("Approach 2 alone: no other placement to share the limit with")
    mirror = mount_bpffs()
    try:
        code, _ = cli_json("run", "--kernel", "--bpffs", mirror, "--cgroup-root", cg)
        assert code == 0
        a1_links = len(libbpf.cgroup_stat_links())
        a2_dfl = sum(1 for d in libbpf.cgroupfs_stat_links() if d.hierarchy_id == 0)
        made, refused = 0, None
        for i in range(70):
            try:
                link_fds.append(stat.attach(cg, f"joint{i}"))
                made += 1
            except LibbpfError as err:
                refused = err.errno
                break
        assert a1_links >= 1
        assert (made + a2_dfl + a1_links, refused) == (64, errno.E2BIG)
    finally:
        for fd in link_fds:
            libbpf.link_detach(fd)
        kernel_a1.detach_all()
        umount_bpffs(mirror)
