"""Bad input: one clear line on stderr, exit 2, no traceback, no state touched."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, Mirror, assert_one_line_error, cli

from bpffs_sync import libbpf
from bpffs_sync.errors import LibbpfError
from bpffs_sync.measure.bench import MEMORY_V1_STAT
from bpffs_sync.programs import lookup, missing_kfuncs
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs


def test_unknown_program(mirror: Mirror) -> None:
    """--program nope names the program and the known ones."""
    assert_one_line_error(mirror.cli("run", "--program", "nope"), "nope", "hist_oncpu")


def test_program_whose_kfuncs_the_kernel_lacks(mirror: Mirror) -> None:
    """--program memcg_stat on a kernel without the memcg kfuncs (Linux 7.0+): one line naming the
    stat and a missing kfunc, before anything is loaded or pinned (user-space and auto mode)."""
    if not missing_kfuncs(lookup("memcg_stat")):
        pytest.skip("this kernel has the memcg kfuncs")
    before = sorted(os.listdir(mirror.bpffs))
    user_space = mirror.cli("run", "--once", "--program", "memcg_stat")
    auto = cli("run", *mirror.args(), "--once", "--program", "hist_oncpu", "--program", "memcg_stat", env=mirror.env)
    for res in (user_space, auto):
        assert_one_line_error(res, "stat program memcg_stat", "memcg kfuncs", "has no bpf_mem_cgroup_page_state")
    assert sorted(os.listdir(mirror.bpffs)) == before


def test_missing_cgroup_root(bpffs_mount: str) -> None:
    """A cgroup root that does not exist."""
    res = cli("verify", "--bpffs", bpffs_mount, "--cgroup-root", "/sys/fs/cgroup/unified/no-such-cgroup")
    assert_one_line_error(res, "no-such-cgroup", "No such file")


def test_cgroup_root_not_v2(bpffs_mount: str) -> None:
    """A directory that is not a cgroup."""
    assert_one_line_error(cli("verify", "--bpffs", bpffs_mount, "--cgroup-root", "/tmp"), "not a cgroup")


def test_bpffs_not_bpffs(cgroup_root: str) -> None:
    """--bpffs pointing at a non-bpffs directory is refused, not mounted over."""
    res = cli("run", "--bpffs", "/tmp", "--cgroup-root", cgroup_root, "--once")
    assert_one_line_error(res, "/tmp", "not a bpf filesystem")


def test_unwritable_bpffs(cgroup_root: str) -> None:
    """A read-only bpffs mount."""
    path = mount_bpffs("ro")
    try:
        res = cli("run", "--bpffs", path, "--cgroup-root", cgroup_root, "--once")
        assert_one_line_error(res, path, "read-only")
        assert os.listdir(path) == [] or "cgroup" not in os.listdir(path)
    finally:
        umount_bpffs(path)


def test_objects_not_built(mirror: Mirror) -> None:
    """A missing BPF object says how to build it."""
    res = cli("run", *mirror.args(), "--once", env={**mirror.env, "BPFFS_SYNC_BPF_DIR": "/nonexistent"})
    assert_one_line_error(res, "make bpf")


def test_not_root(mirror: Mirror) -> None:
    """An unprivileged user is told to be root."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "bpffs_sync",
         "verify", *mirror.args()],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": "/tmp"},
    )
    assert_one_line_error(res, "must run as root")


def test_usage_error_is_one_line() -> None:
    """An unknown option: argparse's message, on one line, exit 2."""
    res = cli("verify", "--no-such-flag")
    assert_one_line_error(res, "--no-such-flag")


def test_second_daemon_on_same_bpffs(mirror: Mirror) -> None:
    """Two daemons on one bpffs would fight: the second is refused with the holder's pid."""
    mirror.start()
    assert mirror.proc is not None
    res = mirror.cli("run")
    assert_one_line_error(res, f"pid {mirror.proc.pid}")


def test_clean_refuses_while_running_then_removes(mirror: Mirror) -> None:
    """clean is refused while the daemon runs; afterwards it removes mirror, maps and collectors."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    assert mirror.proc is not None
    assert_one_line_error(mirror.cli("clean"), f"bpffs-sync run (pid {mirror.proc.pid}) holds this bpffs")
    collector = mirror.status()["programs"]["hist_oncpu"]["collector_link_id"]  # type: ignore[index]
    mirror.stop()
    res = mirror.cli("clean", check=True)
    assert res.stdout.startswith("removed ")
    assert set(os.listdir(mirror.bpffs)) <= {"maps.debug", "progs.debug"}  # no cgroup/, cgroup-v1/, bpffs-sync/
    with pytest.raises(LibbpfError) as gone:  # the collector link went with its last pin
        os.close(libbpf.link_fd_by_id(collector))
    assert gone.value.errno == errno.ENOENT


def test_bench_read_runs_and_reports_ratio(kernel: None) -> None:
    """`bench read --json` (no positional default trap): figures plus a same-run ratio to v1 memory.stat."""
    res = cli("bench", "read", "--reads", "50", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)["read"]
    assert doc["hist_oncpu_us"] > 0 and doc["reads"] == 50
    if os.path.exists(MEMORY_V1_STAT):  # the baseline exists here: the ratio must be there and be its quotient
        assert doc["memory_stat_us"] > 0
        assert abs(doc["ratio"] - doc["hist_oncpu_us"] / doc["memory_stat_us"]) < 0.02  # figures are rounded
    else:
        assert "ratio" not in doc and doc["baseline"].endswith("absent (no cgroup-v1 memory hierarchy)")


def test_bench_rejects_unknown_benchmark() -> None:
    """An unknown benchmark name is a usage error."""
    assert_one_line_error(cli("bench", "nope"), "nope")


def test_closed_stdout_is_quiet(mirror: Mirror) -> None:
    """`status --json` into a pipe whose reader has already left: no error line, exit 141 like SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, however small the document
    try:
        res = subprocess.run([sys.executable, "-m", "bpffs_sync", "status", "--json", *mirror.args()],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, check=False,
                             env={**os.environ, **mirror.env})
    finally:
        os.close(write_end)
    assert res.stderr == ""
    assert res.returncode == 141
