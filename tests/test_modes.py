"""One interface, three backends: the mode is chosen by a feature probe (status says which), and
stat files' access follows cgroupfs by default, with an option to narrow it."""

from __future__ import annotations

import grp
import json
import os
import subprocess

import pytest
from helpers import Mirror, assert_one_line_error, cli

from bpffs_sync.backends import kernel_a1, pick


def test_auto_is_user_space_on_a_stock_kernel(mirror: Mirror) -> None:
    """Without the series in the running kernel, auto picks the user-space mirror, and status says so."""
    assert not kernel_a1.supported()  # this host's stock kernel: the probe must say no
    assert pick().mode == "user-space"
    assert mirror.status()["mode"] == "user-space"


@pytest.mark.parametrize("argv", [["run", "--kernel"], ["verify", "--kernel"], ["verify", "--approach", "2"],
                                  ["clean", "--approach", "2"]])
def test_a_kernel_mode_on_a_stock_kernel_is_one_line(mirror: Mirror, argv: list[str]) -> None:
    """Asking for a kernel backend the running kernel lacks: exit 2, one line naming what is missing."""
    assert_one_line_error(mirror.cli(*argv), "kernel lacks")


def test_approach_2_has_no_user_space_mirror(mirror: Mirror) -> None:
    assert_one_line_error(mirror.cli("verify", "--approach", "2", "--user-space"), "--approach 2 --user-space")


def test_user_space_and_kernel_exclude_each_other(mirror: Mirror) -> None:
    res = mirror.cli("verify", "--user-space", "--kernel")
    assert res.returncode == 2 and "not allowed with argument" in res.stderr


def _gid() -> int:
    """A group that uid 65534 is not in (the other reader's)."""
    return next(g.gr_gid for g in grp.getgrall() if g.gr_gid not in (0, 65534) and not g.gr_mem)


def test_file_group_and_mode_narrow_who_reads(mirror: Mirror) -> None:
    """--file-mode 0440 --file-group G: a member of G can cat a stat file, another user cannot; verify
    judges access by the running daemon's options (its telemetry), or by its own."""
    os.mkdir(mirror.cg("a"))
    gid = _gid()
    mirror.start("--file-mode", "0440", "--file-group", str(gid))
    path = mirror.stat_path("a")
    st = os.stat(path)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o440, 0, gid)
    member = subprocess.run(["setpriv", "--reuid=65534", f"--regid={gid}", "--clear-groups", "cat", path],
                            capture_output=True, text=True, check=False)
    assert member.returncode == 0 and member.stdout.startswith("cgroup_id: "), member.stderr
    other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", path],
                           capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "Permission denied" in other.stderr
    assert mirror.cli("verify").returncode == 0  # the daemon's access, from its telemetry
    mirror.stop()
    drift = json.loads(mirror.cli("verify", "--json").stdout)["drift"]  # no daemon: the defaults
    assert {d["path"] for d in drift["bad_mode"]} == {"hist_oncpu", "a/hist_oncpu"}
    assert mirror.cli("verify", "--file-mode", "0440", "--file-group", str(gid)).returncode == 0


@pytest.mark.parametrize(("value", "needle"), [("0644", "read-only"), ("0044", "read-only"), ("9", "octal"),
                                               ("", "octal")])
def test_bad_file_mode_is_a_usage_error(value: str, needle: str) -> None:
    res = cli("verify", "--file-mode", value)
    assert res.returncode == 2 and "--file-mode" in res.stderr and needle in res.stderr, res.stderr


def test_unknown_file_group_is_a_usage_error() -> None:
    res = cli("run", "--file-group", "no-such-group-bpffs-sync")
    assert res.returncode == 2 and "no such group" in res.stderr, res.stderr
