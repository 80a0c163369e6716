"""Pure logic behind liveness and the kernel mirror's pins: /proc parsing, pin verdicts, clean's refusal.

The patched-kernel paths cannot run on a stock kernel; their decisions are pure functions tested here
(the in-guest tests exercise them end to end)."""

from __future__ import annotations

import errno
import os

import pytest

from bpffs_sync import rundir
from bpffs_sync.backends import kernel_a1
from bpffs_sync.backends.kernel_a1 import pin_verdict
from bpffs_sync.backends.statlink import PIN_ABSENT, PIN_OTHER, PIN_OURS, PIN_UNKNOWN, get_error_verdict
from bpffs_sync.backends.user_space import kernel_users
from bpffs_sync.libbpf import CgroupStatLinkDesc

pytestmark = pytest.mark.unit

LOCKS = """\
1: FLOCK  ADVISORY  WRITE 3175 fe:00:1450188 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4000 fe:00:1450188 0 EOF
2: POSIX  ADVISORY  WRITE 812 00:1a:77 0 EOF
3: FLOCK  ADVISORY  WRITE 900 00:1a:77 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:1a:78 0 EOF
"""


def test_lock_holder_is_the_flock_on_that_inode() -> None:
    """The FLOCK on (dev, ino) names its holder; a blocked waiter (`->`) does not."""
    assert rundir.parse_lock_holders(LOCKS, os.makedev(0xFE, 0), 1450188) == [3175]


def test_lock_holder_ignores_posix_locks_and_other_inodes() -> None:
    """A POSIX lock on the same inode is not our flock; another inode is not our file."""
    assert rundir.parse_lock_holders(LOCKS, os.makedev(0, 0x1A), 77) == [900]
    assert rundir.parse_lock_holders(LOCKS, os.makedev(0, 0x1A), 78) == []
    assert rundir.parse_lock_holders(LOCKS, os.makedev(0, 0x1B), 77) == []


def test_start_time_survives_odd_command_names() -> None:
    """comm may hold spaces and parentheses: field 22 is counted from the last `)`."""
    line = b"42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 " + b"0 " * 30
    assert rundir.parse_start_time(line) == 987654
    assert rundir.parse_start_time(b"42 (truncated") is None


def test_own_start_time_matches_proc() -> None:
    """start_time(pid) reads /proc/<pid>/stat; an absent pid has none."""
    assert isinstance(rundir.start_time(os.getpid()), int)
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        assert rundir.start_time(int(f.read()) + 1) is None


@pytest.mark.parametrize(("err", "verdict"), [
    (errno.ENOENT, PIN_ABSENT),
    (errno.EACCES, PIN_OTHER),
    (errno.EINTR, PIN_UNKNOWN),
    (errno.ENOMEM, PIN_UNKNOWN),
    (errno.EAGAIN, PIN_UNKNOWN),
    (errno.EMFILE, PIN_UNKNOWN),
    (errno.ENFILE, PIN_UNKNOWN),
    (errno.EPERM, PIN_UNKNOWN),
])
def test_only_a_definite_obj_get_error_condemns_the_pin(err: int, verdict: str) -> None:
    """BPF_OBJ_GET failing transiently (EINTR, ENOMEM, EAGAIN, fd limits...) never leads to removal."""
    assert get_error_verdict(err) == verdict


def _link(name: str = "hist_oncpu", cgroup_id: int = 1) -> CgroupStatLinkDesc:
    return CgroupStatLinkDesc(link_id=7, prog_id=9, cgroup_id=cgroup_id, name=name, nr_files=3, nr_errors=0)


@pytest.mark.parametrize(("kind", "desc", "verdict"), [
    ("link", _link(), PIN_OURS),
    ("link", _link(cgroup_id=0), PIN_OTHER),  # detached
    ("link", _link(cgroup_id=2), PIN_OTHER),  # rooted elsewhere
    ("link", _link(name="memcg_histo"), PIN_OTHER),  # another stat's
    ("link", None, PIN_OTHER),  # another link type
    ("prog", None, PIN_OTHER),
    ("map", None, PIN_OTHER),
])
def test_pin_verdict(kind: str, desc: CgroupStatLinkDesc | None, verdict: str) -> None:
    """Adopt only this stat's live link at this root; everything else is definitely not ours."""
    assert pin_verdict(kind, desc, "hist_oncpu", 1) == verdict


def test_clean_sees_kernel_users() -> None:
    """A private stat directory holding either kernel mode's link pin makes the user-space `clean` refuse."""
    entries = {"hist_oncpu": ["stats", "collector", kernel_a1.A1_LINK_PIN], "memcg_histo": ["stats", "collector"]}
    assert kernel_users(entries) == {"hist_oncpu": ["kernel"]}
    assert kernel_users({"memcg_histo": ["stats", "collector"]}) == {}
    both = {"hist_oncpu": ["stats", "cgroupfs_link", "cgroupfs_link_h3"], "memcg_histo": ["cgroupfs_link_h4"]}
    assert kernel_users(both) == {"hist_oncpu": ["approach-2"], "memcg_histo": ["approach-2"]}
    assert kernel_users({"x": ["native_link", "cgroupfs_link"]}) == {"x": ["approach-2", "kernel"]}
    assert kernel_users({"x": ["cgroupfs_linkage"]}) == {}  # a name that merely starts alike is no pin of ours
