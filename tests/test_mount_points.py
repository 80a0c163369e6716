"""A filesystem mounted below the mirror root is never crossed: not entered, not chmodded, nothing
made or removed in it, by the daemon or by `clean`; `verify` names it as drift of its own kind.

Two mounts per test: a tmpfs (mode 1777, a file and a directory in it) on <bpffs>/cgroup/x, and
a second bpffs instance holding another program's pinned map, bind-mounted on <bpffs>/cgroup/z.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

Snapshot = dict[str, tuple[int, int, int]]  # relative path -> (mode, inode, size)


def _snapshot(top: str) -> Snapshot:
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            out[os.path.relpath(path, top)] = (st.st_mode, st.st_ino, st.st_size)
    return out


def _umount(path: str) -> None:
    if subprocess.run(["umount", path], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True, check=False)


@dataclass
class Foreign:
    tmpfs: str  # <bpffs>/cgroup/x
    bind: str  # <bpffs>/cgroup/z
    other_bpffs: str  # the second bpffs instance (also mounted on its own)

    def snapshot(self) -> tuple[Snapshot, Snapshot]:
        return _snapshot(self.tmpfs), _snapshot(self.bind)

    def umount(self) -> None:
        for path in (self.tmpfs, self.bind):
            if os.path.ismount(path):
                _umount(path)


@pytest.fixture
def foreign(mirror: Mirror) -> Iterator[Foreign]:
    """x and z mirrored, then a tmpfs on the mirror's x and another bpffs bound on its z. Unmounted
    before the mirror fixture removes the mirror tree (which would otherwise reach into them)."""
    for rel in ("x", "z", "w"):
        os.mkdir(mirror.cg(rel))
    mirror.cli("run", "--once", check=True)
    other = mount_bpffs()
    f = Foreign(os.path.join(mirror.bpffs, "cgroup", "x"), os.path.join(mirror.bpffs, "cgroup", "z"), other)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1m", "tmpfs", f.tmpfs], check=True)
        os.mkdir(os.path.join(f.tmpfs, "d"))
        for rel in ("f", "d/g"):
            with open(os.path.join(f.tmpfs, rel), "w", encoding="utf-8") as fh:
                fh.write("theirs\n")
        subprocess.run(["bpftool", "map", "create", os.path.join(other, "theirs"), "type", "array", "key", "4",
                        "value", "4", "entries", "1", "name", "theirs"], check=True)
        subprocess.run(["mount", "--bind", other, f.bind], check=True)
        yield f
    finally:
        f.umount()
        umount_bpffs(other)


def _assert_untouched(f: Foreign, before: tuple[Snapshot, Snapshot]) -> None:
    tmpfs, bind = f.snapshot()
    assert tmpfs == before[0], "the tmpfs changed"
    assert bind == before[1], "the bound bpffs changed"
    assert os.stat(f.tmpfs).st_mode & 0o7777 == 0o1777
    assert "theirs" in os.listdir(f.bind) and "hist_oncpu" not in os.listdir(f.bind)


def _verify_names_mounts(mirror: Mirror) -> None:
    res = mirror.cli("verify")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for rel in ("x", "z"):
        assert any(line.split()[:3] == ["mount_point", rel, "(another"] for line in lines), res.stdout
    assert "missing" not in res.stdout and "bad_mode" not in res.stdout, res.stdout
    doc = json.loads(mirror.cli("verify", "--json").stdout)
    assert sorted(d["path"] for d in doc["drift"]["mount_point"]) == ["x", "z"], doc
    assert set(doc["drift"]) == {"mount_point"}, doc


def test_daemon_never_crosses_a_mount_point(mirror: Mirror, foreign: Foreign) -> None:
    """Hints and full passes below and beside two foreign mounts leave both as they were; each is
    logged once; once unmounted, the mirror fills in what it could not make."""
    before = foreign.snapshot()
    mirror.start(resync_interval=0.5)
    for rel in ("x/y", "z/q", "w/v"):
        os.mkdir(mirror.cg(rel))
    wait_for(lambda: os.path.exists(mirror.stat_path("w/v")), 30, "w/v mirrored")
    passes = mirror.full_passes()
    wait_for(lambda: mirror.full_passes() >= passes + 3, 60, "three more full passes")
    _assert_untouched(foreign, before)
    _verify_names_mounts(mirror)
    events = [json.loads(line) for line in mirror.log().splitlines() if line.startswith("{")]
    crossed = [e for e in events if e.get("event") == "mount_point_left_alone"]
    assert sorted(e["path"] for e in crossed) == ["x", "z"], crossed  # once each, not once per pass
    assert not [e for e in events if e.get("event") == "op_failed"], mirror.log()
    foreign.umount()
    wait_for(mirror.in_sync, 60, "in sync once unmounted")
    assert os.path.exists(mirror.stat_path("x/y")) and os.path.exists(mirror.stat_path("z/q"))


def test_run_once_and_verify_never_cross_a_mount_point(mirror: Mirror, foreign: Foreign) -> None:
    """A one-shot pass leaves both mounts as they were; verify reports them as mount_point drift."""
    before = foreign.snapshot()
    os.mkdir(mirror.cg("x/y"))
    mirror.cli("run", "--once")
    _assert_untouched(foreign, before)
    _verify_names_mounts(mirror)


def test_clean_never_crosses_a_mount_point(mirror: Mirror, foreign: Foreign) -> None:
    """clean removes everything of ours, leaves both mounts (and the directories holding them) as
    they were, and says so in one line (exit 2)."""
    before = foreign.snapshot()
    res = mirror.cli("clean")
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "mount point" in res.stderr and "cgroup/x" in res.stderr and "cgroup/z" in res.stderr, res.stderr
    _assert_untouched(foreign, before)
    assert sorted(os.listdir(os.path.join(mirror.bpffs, "cgroup"))) == ["x", "z"]
    assert not os.path.exists(os.path.join(mirror.bpffs, "bpffs-sync"))
