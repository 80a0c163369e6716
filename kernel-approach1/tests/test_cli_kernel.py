"""`bpffs-sync run/verify/clean --kernel` against the patched kernel: the CLI attaches one link per
stat, adopts it on a rerun, swaps a stale program in place and detaches on clean. Real bpffs,
real cgroups, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from test_cgroup_stat import NAME, cgroups_under, make_tree, stat_files

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1

EXE = os.path.join(os.path.dirname(sys.executable), "bpffs-sync")

# Each CLI call loads the stats' programs, a minute or more under TCG on a loaded host, and a test
# here makes several: pyproject's 300 s per test cut two off on 2026-12-07 (five guests on 2 cores).
pytestmark = pytest.mark.timeout(1800)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    # generous: a debug kernel under TCG takes minutes to load and verify the programs
    return subprocess.run([EXE, *args], capture_output=True, text=True, check=False, timeout=900)


def run_kernel(fs: str, cg: str) -> dict[str, Any]:
    res = cli("run", "--kernel", "--json", "--bpffs", fs, "--cgroup-root", cg)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def test_auto_mode_is_the_kernel_here(plain_fs: str, cg: str) -> None:
    """With the series in the running kernel, plain `run` attaches links, and status says kernel."""
    make_tree(cg, "a")
    res = cli("run", "--json", "--bpffs", plain_fs, "--cgroup-root", cg)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["mode"] == "kernel" and [o["stat"] for o in doc["links"]] == [NAME]
    res = cli("status", "--json", "--bpffs", plain_fs, "--cgroup-root", cg)
    assert json.loads(res.stdout)["mode"] == "kernel"
    res = cli("clean", "--json", "--bpffs", plain_fs, "--cgroup-root", cg)
    assert res.returncode == 0 and json.loads(res.stdout)["mode"] == "kernel", res.stderr
    assert stat_files(plain_fs) == set()


def test_run_kernel_attaches_adopts_and_cleans(plain_fs: str, cg: str) -> None:
    make_tree(cg, "a/b.scope", "c.slice")
    first = run_kernel(plain_fs, cg)["links"]
    assert [(o["stat"], o["action"]) for o in first] == [(NAME, "created")]
    assert kernel_a1.mirror_enabled(plain_fs)
    assert stat_files(plain_fs) == cgroups_under(cg)
    assert first[0]["nr_files"] == len(cgroups_under(cg))

    again = run_kernel(plain_fs, cg)["links"]  # idempotent: the same link, not a second one
    assert [(o["action"], o["link_id"]) for o in again] == [("adopted", first[0]["link_id"])]
    assert len(libbpf.cgroup_stat_links()) == 1

    res = cli("status", "--json", "--bpffs", plain_fs, "--cgroup-root", cg)
    assert res.returncode == 0, res.stderr
    kernel = json.loads(res.stdout)["kernel"]
    assert kernel["mirror_enabled"]
    assert [(x["id"], x["nr_files"]) for x in kernel["links"]] == [(first[0]["link_id"], first[0]["nr_files"])]

    res = cli("verify", "--kernel", "--json", "--bpffs", plain_fs)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["in_sync"]

    res = cli("clean", "--kernel", "--json", "--bpffs", plain_fs, "--cgroup-root", cg)
    assert res.returncode == 0, res.stderr
    assert stat_files(plain_fs) == set()
    assert not os.path.exists(os.path.join(plain_fs, "bpffs-sync"))
    assert kernel_a1.detach_all() == 0  # nothing left attached


def test_run_kernel_swaps_a_stale_program_keeping_the_files(plain_fs: str, cg: str) -> None:
    """A new stats map (e.g. an incompatible build) means a new program: BPF_LINK_UPDATE, same link."""
    make_tree(cg, "a")
    first = run_kernel(plain_fs, cg)["links"][0]
    os.unlink(os.path.join(plain_fs, "bpffs-sync", NAME, "oncpu_stats"))  # the next run starts a new generation
    second = run_kernel(plain_fs, cg)["links"][0]
    assert (second["action"], second["link_id"]) == ("updated", first["link_id"])
    assert stat_files(plain_fs) == cgroups_under(cg)
    third = run_kernel(plain_fs, cg)["links"][0]
    assert third["action"] == "adopted"


def test_run_kernel_replaces_a_detached_pin(plain_fs: str, cg: str) -> None:
    first = run_kernel(plain_fs, cg)["links"][0]
    assert kernel_a1.detach_all([NAME]) == 1  # someone detached it; our pin now holds a dead link
    assert stat_files(plain_fs) == set()
    second = run_kernel(plain_fs, cg)["links"][0]
    assert second["action"] == "created" and second["link_id"] != first["link_id"]
    assert stat_files(plain_fs) == cgroups_under(cg)


def test_run_kernel_refuses_a_foreign_link_of_the_same_name(stat: kernel_a1.KernelMirror, mirror_fs: str,
                                                            cg: str, link_fds: list[int]) -> None:
    link_fds.append(stat.attach(cg))  # not pinned where the CLI looks: someone else's
    res = cli("run", "--kernel", "--bpffs", mirror_fs, "--cgroup-root", cg)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "clean --kernel" in res.stderr


def test_userspace_run_refuses_the_kernels_mirror(mirror_fs: str, cg: str) -> None:
    """--user-space on a bpffs holding the kernel's mirror: refused, nothing written."""
    res = cli("run", "--once", "--user-space", "--bpffs", mirror_fs, "--cgroup-root", cg)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--kernel" in res.stderr
    assert not os.path.exists(os.path.join(mirror_fs, "bpffs-sync"))
