"""`bpffs-sync run/verify/status/clean --kernel --v1` against patch 9 (a cgroup stat link rooted at a
v1 cgroup): the real CLI in a subprocess, on a v1 hierarchy each test mounts (tests/v1_scratch.py).
run attaches per selected hierarchy its controllers' default stats at its root (or the selected
cgroup), pinned as native_link_h<id>, adopted on a rerun; verify compares cgroup-v1/<hierarchy>/
with the hierarchy's cgroups and the top of cgroup-v1/ (exit 0 / 1); status counts per hierarchy;
clean detaches every hierarchy's links. Every mount, link and pin goes at the end (the fixtures:
plain_fs detaches every link and unmounts the bpffs, the hierarchy's fixture removes its cgroups
and unmounts it)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from test_cli_kernel import cli

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.mirror.forest import hierarchies

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from v1_scratch import mounted_v1_hierarchy

NAME = "hist_oncpu"
CPU = "cpu,cpuacct"

# Each CLI call loads the stats' programs (a minute or more under TCG on a loaded host) and a test
# here makes up to nine: pyproject's 300 s per test cut two of them off half way on the first boot.
pytestmark = pytest.mark.timeout(1800)


def hierarchy_id(mount_point: str) -> int:
    return next(h.hierarchy_id for h in hierarchies() if mount_point in h.mount_points)


def cgroups_of(root: str, under: str = ".") -> set[str]:
    """Relative paths ("." for the root) of the cgroups of a v1 hierarchy mounted at root, at or below `under`."""
    top = os.path.join(root, under)
    return {os.path.normpath(os.path.join(under, os.path.relpath(d, top))) for d, _dirs, _files in os.walk(top)}


def files_of(tree: str, name: str = NAME) -> set[str]:
    """Relative paths of the mirror directories under tree holding `name`."""
    return {os.path.relpath(d, tree) for d, _dirs, files in os.walk(tree) if name in files}


def cli_json(*args: str, code: int = 0) -> dict[str, Any]:
    res = cli(*args, "--json")
    assert res.returncode == code, f"exit {res.returncode}: {res.stdout}{res.stderr}"
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture
def cpu_v1() -> Iterator[str]:
    """cpu and cpuacct co-mounted on a v1 hierarchy of the test's (hist_oncpu is their default stat)."""
    try:
        with mounted_v1_hierarchy(CPU) as path:
            yield path
    except OSError as err:
        pytest.skip(f"cannot mount a v1 hierarchy with -o {CPU}: {err}")


@pytest.fixture
def memory_v1() -> Iterator[str]:
    """The memory controller on a v1 hierarchy of its own (memcg_histo its default stat): taken off
    the v2 root's subtree_control first, put back afterwards if it was there."""
    control = "/sys/fs/cgroup/cgroup.subtree_control"
    with open(control, encoding="ascii") as f:
        was_on = "memory" in f.read().split()
    try:
        with open(control, "w", encoding="ascii") as f:
            f.write("-memory")
    except OSError as err:
        pytest.skip(f"memory stays enabled on the v2 root: {err}")
    try:
        with mounted_v1_hierarchy("memory") as path:
            yield path
    except OSError as err:
        pytest.skip(f"cannot mount the v1 memory hierarchy: {err}")
    finally:
        if was_on:
            with contextlib.suppress(OSError), open(control, "w", encoding="ascii") as f:
                f.write("+memory")


def test_run_verify_status_clean_on_cpu_cpuacct(plain_fs: str, cg: str, cpu_v1: str) -> None:
    """run --v1 cpu,cpuacct: the v2 link at --cgroup-root and one at the hierarchy's root, pinned per
    hierarchy; the kernel's tree holds a file in every cgroup of the hierarchy, with a symlink per
    controller; a rerun adopts both; verify exits 0 (text and JSON); status counts per hierarchy;
    clean detaches both and leaves nothing."""
    for rel in ("a/b", "c.scope"):
        os.makedirs(os.path.join(cpu_v1, rel))
    hid = hierarchy_id(cpu_v1)
    common = ("--bpffs", plain_fs, "--cgroup-root", cg)
    first = cli_json("run", "--kernel", "--v1", CPU, *common)["links"]
    assert [(o["stat"], o["action"], o["hierarchy_id"], o["cgroup_root"], o["tree"]) for o in first] == [
        (NAME, "created", 0, cg, "cgroup"), (NAME, "created", hid, cpu_v1, f"cgroup-v1/{CPU}")]
    assert os.path.basename(first[1]["pin"]) == f"native_link_h{hid}"
    v1_tree = os.path.join(plain_fs, "cgroup-v1", CPU)
    assert files_of(v1_tree) == cgroups_of(cpu_v1) == {".", "a", "a/b", "c.scope"}
    assert first[1]["nr_files"] == 4
    top = os.path.join(plain_fs, "cgroup-v1")
    assert {n: os.readlink(os.path.join(top, n)) for n in ("cpu", "cpuacct")} == {"cpu": CPU, "cpuacct": CPU}

    again = cli_json("run", "--kernel", "--v1", CPU, *common)["links"]  # idempotent: the same two links
    assert [(o["action"], o["link_id"]) for o in again] == [("adopted", o["link_id"]) for o in first]
    assert len(libbpf.cgroup_stat_links()) == 2

    report = cli_json("verify", "--kernel", "--v1", CPU, *common)
    assert report["in_sync"] and report["top_drift"] == {}
    [tree] = report["trees"]
    assert (tree["tree"], tree["hierarchy_id"], tree["cgroups"], tree["files"]) == (f"cgroup-v1/{CPU}", hid, 4, 4)
    assert [x["id"] for x in tree["links"]] == [first[1]["link_id"]]
    text = cli("verify", "--kernel", "--v1", "cpuacct", *common)  # by a controller of the hierarchy
    assert text.returncode == 0 and f"== cgroup-v1/{CPU} <- {cpu_v1}" in text.stdout, text.stdout + text.stderr

    status = cli_json("status", "--kernel", *common)["kernel"]
    rows = {r["hierarchy_id"]: r for r in status["hierarchies"]}
    assert (rows[hid]["hierarchy"], rows[hid]["tree"], rows[hid]["links"], rows[hid]["nr_files"],
            rows[hid]["stat_files"], rows[hid]["dirs"]) == (CPU, f"cgroup-v1/{CPU}", 1, 4, 4, 4)
    assert rows[0]["links"] == 1 and rows[0]["nr_files"] == first[0]["nr_files"]
    assert status["v1_symlinks"] == {"cpu": CPU, "cpuacct": CPU}
    plain = cli("status", "--kernel", *common)
    assert f"hierarchy {hid} {CPU}: 1 links, nr_files 4, 0 errors; cgroup-v1/{CPU}: 4 directories" in plain.stdout

    done = cli_json("clean", "--kernel", *common)
    assert done["removed"] >= 2
    assert libbpf.cgroup_stat_links() == []
    assert os.listdir(top) == []
    assert not os.path.exists(os.path.join(plain_fs, "bpffs-sync"))


def test_v1_link_running_a_stale_program_is_drift_until_run_swaps_it(plain_fs: str, cg: str, cpu_v1: str) -> None:
    """A new stats map generation taken by the v2 link alone (run without --v1) leaves the v1 link on
    the old program: verify --v1 says so (exit 1, link_problems), and run --v1 swaps it in place
    (`updated`, the same link and files); verify exits 0 again."""
    os.mkdir(os.path.join(cpu_v1, "job"))
    common = ("--bpffs", plain_fs, "--cgroup-root", cg)
    first = cli_json("run", "--kernel", "--v1", CPU, *common)["links"]
    os.unlink(os.path.join(plain_fs, "bpffs-sync", NAME, "oncpu_stats"))  # the next run makes a new generation
    assert cli_json("run", "--kernel", *common)["links"][0]["action"] == "updated"
    stale = cli_json("verify", "--kernel", "--v1", CPU, *common, code=1)
    [tree] = stale["trees"]
    assert [p for p in tree["link_problems"] if f"link {first[1]['link_id']} ({NAME})" in p
            and "not the current generation" in p], tree
    swapped = cli_json("run", "--kernel", "--v1", CPU, *common)["links"]
    assert [(o["action"], o["link_id"]) for o in swapped] == [("adopted", first[0]["link_id"]),
                                                              ("updated", first[1]["link_id"])]
    assert files_of(os.path.join(plain_fs, "cgroup-v1", CPU)) == {".", "job"}
    assert cli_json("verify", "--kernel", "--v1", CPU, *common)["in_sync"]


def test_a_selected_v1_cgroup_roots_the_link_there(plain_fs: str, cg: str, cpu_v1: str) -> None:
    """--v1 DIR: the link's root is that cgroup; its files keep their paths from the hierarchy's
    root; verify of the same selector (and of the whole hierarchy) is in sync, and the cgroups
    outside the subtree get no file."""
    for rel in ("jobs/a", "other"):
        os.makedirs(os.path.join(cpu_v1, rel))
    jobs = os.path.join(cpu_v1, "jobs")
    common = ("--bpffs", plain_fs, "--cgroup-root", cg)
    links = cli_json("run", "--kernel", "--v1", jobs, *common)["links"]
    assert [(o["cgroup_root"], o["nr_files"]) for o in links[1:]] == [(jobs, 2)]
    assert files_of(os.path.join(plain_fs, "cgroup-v1", CPU)) == cgroups_of(cpu_v1, "jobs") == {"jobs", "jobs/a"}
    for selector in (jobs, CPU):
        report = cli_json("verify", "--kernel", "--v1", selector, *common)
        assert report["in_sync"] and report["trees"][0]["files"] == 2, report


def test_run_never_adopts_another_hierarchys_link_with_an_equal_id(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                                  cpu_v1: str) -> None:
    """The v2 root and a v1 hierarchy's root have the same cgroup id (1). A link on the v1 root
    pinned where the v2 link's pin goes is not the v2 root's link: run --cgroup-root <v2 root>
    replaces it (created, a link on hierarchy 0) instead of adopting it, and the v1 link, unpinned,
    ends with the test's fd."""
    v2_root = "/sys/fs/cgroup"
    if os.stat(cpu_v1).st_ino != os.stat(v2_root).st_ino:
        pytest.skip("the roots' cgroup ids differ here: nothing to confuse")
    fd = stat.attach(cpu_v1)
    try:
        os.makedirs(os.path.join(mirror_fs, "bpffs-sync", NAME), mode=0o755, exist_ok=True)
        libbpf.obj_pin(fd, os.path.join(mirror_fs, "bpffs-sync", NAME, kernel_a1.A1_LINK_PIN))
        theirs = kernel_a1.link_doc(libbpf.cgroup_stat_link_info(fd) or pytest.fail("not a link"))
        assert theirs["hierarchy_id"] == hierarchy_id(cpu_v1) != 0
        [ours] = cli_json("run", "--kernel", "--bpffs", mirror_fs, "--cgroup-root", v2_root)["links"]
        assert (ours["action"], ours["hierarchy_id"]) == ("created", 0) and ours["link_id"] != theirs["id"]
        pinned = libbpf.obj_get(os.path.join(mirror_fs, "bpffs-sync", NAME, kernel_a1.A1_LINK_PIN))
        try:
            desc = libbpf.cgroup_stat_link_info(pinned)
            assert desc is not None and (desc.link_id, desc.hierarchy_id) == (ours["link_id"], 0)
        finally:
            os.close(pinned)
    finally:
        os.close(fd)


def test_verify_kernel_v1_memory(plain_fs: str, cg: str, memory_v1: str) -> None:
    """The issue's check: run --kernel --v1 memory attaches memcg_histo at the v1 memory root, and
    verify --kernel --v1 memory passes; a cgroup made and one removed after are followed."""
    os.makedirs(os.path.join(memory_v1, "job", "a"))
    common = ("--bpffs", plain_fs, "--cgroup-root", cg)
    links = cli_json("run", "--kernel", "--v1", "memory", *common)["links"]
    assert [(o["stat"], o["tree"], o["nr_files"]) for o in links[1:]] == [("memcg_histo", "cgroup-v1/memory", 3)]
    os.mkdir(os.path.join(memory_v1, "job", "b"))
    os.rmdir(os.path.join(memory_v1, "job", "a"))
    res = cli("verify", "--kernel", "--v1", "memory", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    assert files_of(os.path.join(plain_fs, "cgroup-v1", "memory"), "memcg_histo") == {".", "job", "job/b"}
    doc = cli_json("verify", "--kernel", "--v1", "memory", *common)
    assert doc["trees"][0]["files"] == 3 and doc["top_drift"] == {}


def test_verify_kernel_v1_of_what_is_not_mounted_is_one_line(plain_fs: str, cg: str) -> None:
    """Exit 2 and one line: a hierarchy name no mount answers, a controller nobody knows."""
    for selector, needle in (("name=bpffs_sync_absent", "not mounted"), ("nosuchctrl", "unknown controller")):
        res = cli("verify", "--kernel", "--v1", selector, "--bpffs", plain_fs, "--cgroup-root", cg)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
