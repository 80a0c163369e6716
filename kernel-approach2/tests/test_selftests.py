"""Approach 2's upstream-style selftests (tools/testing/selftests/bpf/prog_tests/cgroup_stat_cgroupfs.c
and progs/cgroup_stat_cgroupfs.c, commit "selftests/bpf: Add cgroupfs cgroup stat link tests"), run by
this harness: kernel-approach1/scripts/selftests.sh builds a test_progs holding the selftests a tree's
commits add, its path comes in BPFFS_SYNC_TEST_PROGS, and the guest's dmesg is checked like every other
test's (run-guest.sh)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

TEST_PROGS = os.environ.get("BPFFS_SYNC_TEST_PROGS", "")
TEST = "cgroup_stat_cgroupfs"
# test_progs -a cgroup_stat_cgroupfs (the exact name): each subtest, as it reports them
EXPECTED = {f"{TEST}/{name}" for name in (
    "files", "read", "mkdir_rmdir", "reread", "fail", "sleepable", "update_lifetime", "names", "link_info",
    "detach", "rmdir_root",
)}


def run_test_progs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TEST_PROGS, *args], cwd=os.path.dirname(TEST_PROGS),
                          capture_output=True, text=True, check=False, timeout=1800)


def test_selftests_pass() -> None:
    """test_progs -a cgroup_stat_cgroupfs: every subtest OK, none skipped, none missing."""
    if not TEST_PROGS:
        pytest.skip("no test_progs: BPFFS_SYNC_TEST_PROGS unset (kernel-approach1/scripts/selftests.sh builds it)")
    listed = run_test_progs("-l")
    assert listed.returncode == 0, (listed.stdout + listed.stderr)[-2000:]
    # the series' 9/9 adds them: a test_progs without them was built from the wrong tree
    assert TEST in listed.stdout.split(), f"{TEST_PROGS} has no {TEST}"
    res = run_test_progs("-a", TEST)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    results = dict(re.findall(r"^#\d+/\d+\s+(\S+):(\w+)", out, re.MULTILINE))
    assert set(results) == EXPECTED, out[-4000:]
    assert set(results.values()) == {"OK"}, results
    summary = rf"^Summary: 1/{len(EXPECTED)} PASSED, 0 SKIPPED, 0/0 FAILED"
    assert re.search(summary, out, re.MULTILINE), out[-2000:]
