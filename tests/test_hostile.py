"""The daemon runs as root beside a world-writable, sticky bpffs root and below cgroup trees that
unprivileged users name and nest. Nothing they plant is followed or adopted; no path is too long."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from helpers import Mirror, assert_one_line_error, mkdir_chain

from bpffs_sync.sandbox import _rmdir_post_order

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *cmd], capture_output=True, text=True, check=False)




@pytest.fixture
def outside() -> Iterator[str]:
    """A directory outside bpffs a planted symlink points at: it must stay empty."""
    path = tempfile.mkdtemp(prefix="bpffs-sync-outside-")
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", path], check=False)


# `cgroup-v1` is ours only when v1 trees are asked for (--v1): v1_run gives the run's extra options.
PLANTED = [("bpffs-sync", []), ("cgroup", []), ("cgroup-v1", ["--v1", "memory"])]


@pytest.mark.parametrize(("name", "v1_run"), PLANTED)
def test_planted_symlink_is_refused_not_followed(mirror: Mirror, outside: str, name: str,
                                                 v1_run: list[str]) -> None:
    """A user's symlink at the bpffs root where we keep state: run exits 2 naming it, writes nothing."""
    assert as_nobody("ln", "-s", outside, os.path.join(mirror.bpffs, name)).returncode == 0
    os.mkdir(mirror.cg("a"))
    assert_one_line_error(mirror.cli("run", "--once", *v1_run), name, "symlink")
    assert os.listdir(outside) == []
    assert os.path.islink(os.path.join(mirror.bpffs, name))  # left for a human to look at


@pytest.mark.parametrize(("name", "v1_run"), PLANTED)
def test_planted_directory_is_refused_not_adopted(mirror: Mirror, name: str, v1_run: list[str]) -> None:
    """A user's directory at the bpffs root: run exits 2 naming its owner; its content is untouched."""
    planted = os.path.join(mirror.bpffs, name)
    assert as_nobody("mkdir", planted).returncode == 0
    assert as_nobody("mkdir", os.path.join(planted, "hist_oncpu")).returncode == 0
    assert_one_line_error(mirror.cli("run", "--once", *v1_run), name, "uid 65534")
    assert os.listdir(planted) == ["hist_oncpu"] and os.stat(planted).st_uid == 65534
    assert_one_line_error(mirror.cli("clean"), name)  # nor is it removed through
    assert os.listdir(planted) == ["hist_oncpu"]


def test_planted_v1_root_does_not_stop_a_v2_run(mirror: Mirror) -> None:
    """`cgroup-v1` planted by a user is none of a v2-only run's business: run, status and verify work
    and leave it alone; clean removes what is ours, names the planted entry and exits 2."""
    planted = os.path.join(mirror.bpffs, "cgroup-v1")
    assert as_nobody("mkdir", planted).returncode == 0
    os.mkdir(mirror.cg("a"))
    mirror.cli("run", "--once", check=True)
    assert os.path.exists(mirror.stat_path("a")) and mirror.cli("verify").returncode == 0
    v1 = mirror.status()["v1"]
    assert isinstance(v1, dict) and list(v1) == ["not_ours"] and "uid 65534" in v1["not_ours"], v1
    assert_one_line_error(mirror.cli("clean"), "cgroup-v1", "left alone")
    assert not os.path.exists(os.path.join(mirror.bpffs, "cgroup"))
    assert not os.path.exists(os.path.join(mirror.bpffs, "bpffs-sync"))
    assert os.stat(planted).st_uid == 65534


def test_root_owned_but_world_writable_is_refused(mirror: Mirror) -> None:
    """Root's directory that others may write into is as unsafe as a planted one."""
    os.mkdir(os.path.join(mirror.bpffs, "cgroup"), 0o777)
    os.chmod(os.path.join(mirror.bpffs, "cgroup"), 0o777)
    assert_one_line_error(mirror.cli("run", "--once"), "cgroup", "writable by group or others")


def test_symlink_inside_the_mirror_is_replaced_not_followed(mirror: Mirror, outside: str) -> None:
    """Hand-made damage below the mirror root (a symlink where a cgroup's directory belongs) is
    wrong_kind drift: the symlink goes, the directory comes, nothing is written through it."""
    os.mkdir(mirror.cg("a"))
    mirror.cli("run", "--once", check=True)
    victim = os.path.join(mirror.bpffs, "cgroup", "a")
    subprocess.run(["rm", "-rf", victim], check=True)
    os.symlink(outside, victim)
    drift = json.loads(mirror.cli("verify", "--json").stdout)["drift"]
    assert [d["path"] for d in drift["wrong_kind"]] == ["a"]
    mirror.cli("run", "--once", check=True)
    assert os.listdir(outside) == []
    assert not os.path.islink(victim) and os.path.exists(os.path.join(victim, "hist_oncpu"))


def _deep_chain(root: str, levels: int, name_len: int) -> list[str]:
    """mkdir a chain root/n1/n2/... made relative to directory fds (its path is too long for mkdir -p)."""
    names = [f"{i:03d}".ljust(name_len, chr(ord("a") + i % 26)) for i in range(levels)]
    mkdir_chain(root, names)
    return names


def _read_at(top: str, names: list[str], leaf: str) -> bytes:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf_fd = os.open(leaf, os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(leaf_fd, 65536)
        finally:
            os.close(leaf_fd)
    finally:
        os.close(fd)


def _dying(cgroup_dir: str) -> int:
    with open(os.path.join(cgroup_dir, "cgroup.stat"), encoding="ascii") as f:
        return int(dict(line.split() for line in f)["nr_dying_descendants"])


def test_paths_longer_than_path_max_are_mirrored_and_removed(mirror: Mirror) -> None:
    """A cgroup chain whose path exceeds PATH_MAX is mirrored like any other, next to the rest of the
    tree, and its removal unpins it (no dying cgroup kept alive by a pin)."""
    os.mkdir(mirror.cg("long"))
    os.mkdir(mirror.cg("short"))
    names = _deep_chain(mirror.cg("long"), 20, 250)
    assert len(mirror.cg("long")) + sum(len(n) + 1 for n in names) > 4096
    try:
        mirror.cli("run", "--once", check=True)
        text = _read_at(os.path.join(mirror.bpffs, "cgroup", "long"), names, "hist_oncpu")
        leaf_id = int(text.split(b"\n")[0].split(b":")[1])
        fd = os.open(mirror.cg("long"), os.O_RDONLY | os.O_DIRECTORY)
        for name in names:
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        assert leaf_id == os.fstat(fd).st_ino
        os.close(fd)
        assert os.path.exists(mirror.stat_path("short"))
        assert mirror.cli("verify").returncode == 0
        dying = _dying(mirror.cgroup_root)
    finally:
        _rmdir_post_order(mirror.cg("long"), 10)
    mirror.cli("run", "--once", check=True)
    assert not os.path.lexists(os.path.join(mirror.bpffs, "cgroup", "long"))
    assert mirror.cli("verify").returncode == 0
    from helpers import wait_for
    wait_for(lambda: _dying(mirror.cgroup_root) <= dying - 21 or _dying(mirror.cgroup_root) == 0, 30,
             "the removed chain released (no pin holds it)")


def test_subtree_beyond_the_fd_budget_is_a_conflict_not_a_failure(mirror: Mirror) -> None:
    """With too few fds to walk a deep chain, verify still checks the rest of the tree and reports
    the unreadable subtree as a conflict with its reason (not drift, not a failed command)."""
    os.mkdir(mirror.cg("deep"))
    os.mkdir(mirror.cg("other"))
    _deep_chain(mirror.cg("deep"), 120, 8)
    try:
        mirror.cli("run", "--once", check=True)
        os.rmdir(os.path.join(mirror.cg("other")))  # real drift outside the deep chain
        res = subprocess.run(["prlimit", "--nofile=90:90", "--", *_cli_argv(mirror, "verify", "--json")],
                             capture_output=True, text=True, env={**os.environ, **mirror.env}, check=False)
        doc = json.loads(res.stdout)
        assert res.returncode == 1, res.stderr
        assert {d["path"] for d in doc["drift"]["stale"]} == {"other", "other/hist_oncpu"}
        reasons = {c["reason"] for c in doc["conflicts"]}
        assert reasons == {"unreadable"}, doc["conflicts"]
        assert all("Too many open files" in c["detail"] for c in doc["conflicts"])
    finally:
        _rmdir_post_order(mirror.cg("deep"), 10)


def _cli_argv(mirror: Mirror, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "bpffs_sync", args[0], *mirror.args(), *args[1:]]


def test_stat_files_are_readable_by_users_like_cgroupfs_stat_files(mirror: Mirror) -> None:
    """By default a stat file is 0444 root:root, as cpu.stat is: any user can cat it."""
    os.mkdir(mirror.cg("a"))
    mirror.cli("run", "--once", check=True)
    st = os.stat(mirror.stat_path("a"))
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o444, 0, 0)
    res = as_nobody("cat", mirror.stat_path("a"))
    assert res.returncode == 0 and res.stdout.startswith("cgroup_id: "), res.stderr
    os.chmod(mirror.stat_path("a"), 0o600)  # drift in access is repaired in place
    drift = json.loads(mirror.cli("verify", "--json").stdout)["drift"]
    assert [d["path"] for d in drift["bad_mode"]] == ["a/hist_oncpu"]
    mirror.cli("run", "--once", check=True)
    assert os.stat(mirror.stat_path("a")).st_mode & 0o7777 == 0o444


def _exists_at(top: str, names: list[str], leaf: str) -> bool:
    try:
        _read_at(top, names, leaf)
    except OSError:
        return False
    return True


def test_events_below_path_max_are_watched(mirror: Mirror) -> None:
    """The watcher reaches directories past PATH_MAX too (one name at a time): a cgroup made at the
    bottom of a chain longer than PATH_MAX is mirrored by its event, not by a periodic pass."""
    from helpers import wait_for

    os.mkdir(mirror.cg("long"))
    mirror.start(resync_interval=3600)
    names = _deep_chain(mirror.cg("long"), 20, 250)
    try:
        top = os.path.join(mirror.bpffs, "cgroup", "long")
        wait_for(lambda: _exists_at(top, names, "hist_oncpu"), 30, "the chain's bottom mirrored")
        fd = os.open(mirror.cg("long"), os.O_RDONLY | os.O_DIRECTORY)
        for name in names:
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.mkdir("leaf", dir_fd=fd)
        os.close(fd)
        wait_for(lambda: _exists_at(top, [*names, "leaf"], "hist_oncpu"), 30, "the new leaf mirrored by its event")
        assert mirror.full_passes() == 1  # no periodic pass helped
    finally:
        mirror.stop()
        _rmdir_post_order(mirror.cg("long"), 10)
