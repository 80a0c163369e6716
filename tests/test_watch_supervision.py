"""The supervised watchers (issue 17, item 3), against a real daemon on real cgroups: a watcher whose
reader dies -- an exception in its callback, its fd closed under it -- is noticed, logged once as
`watcher_restarted`, replaced by a fresh one, and a full pass runs at once. --resync-interval is
600 s, so no periodic pass explains what gets mirrored. The faults come from tests/fault_daemon.py
(the real CLI with a fault injector); only the fault is injected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import Mirror, wait_for
from test_watch_overflow import dir_inodes, inotify_marks
from v1_scratch import mounted_v1_hierarchy

from bpffs_sync import rundir
from bpffs_sync.export.health import Health

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_daemon.py")
RESYNC = "600"


def start_faulty(mirror: Mirror, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The daemon through the fault injector, owned by the mirror fixture (which stops it); returns
    once its first full pass is done."""
    mirror.log_path = os.path.join(mirror.run_dir, f"daemon-{uuid.uuid4().hex[:6]}.log")
    with open(mirror.log_path, "w", encoding="utf-8") as log:
        mirror.proc = subprocess.Popen(
            [sys.executable, LAUNCHER, "--log-format", "json", "run", *mirror.args(), "--user-space",
             "--resync-interval", RESYNC, *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **mirror.env, **(env or {})})
    proc = mirror.proc
    wait_for(lambda: mirror.full_passes() >= 1 or proc.poll() is not None, 60, "the daemon's first full pass")
    assert proc.poll() is None, mirror.log()
    return proc


def restarts(mirror: Mirror) -> list[dict[str, object]]:
    out = []
    for line in mirror.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "watcher_restarted":
                out.append(entry)
    return out


def wait_restarted(mirror: Mirror, watcher: str) -> dict[str, object]:
    wait_for(lambda: bool(restarts(mirror)), 15, f"the {watcher} watcher restarted")
    (entry,) = restarts(mirror)
    assert entry["watcher"] == watcher, entry
    return entry


def exported_restarts(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv(rundir.RUN_DIR_ENV, mirror.run_dir)
    for family in Health(mirror.bpffs, None, False).collect():
        for sample in family.samples:
            if sample.name == "bpffs_sync_watcher_restarts_total":
                return float(sample.value)
    raise AssertionError("bpffs_sync_watcher_restarts_total not exported")


def test_cgroup_reader_killed_by_its_callback_is_replaced(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback that raises ends the inotify reader: a fresh watcher and a full pass follow (the
    cgroup whose event raised is mirrored by it), the next mkdir is mirrored by its event, and
    status and the exporter count one restart."""
    os.makedirs(mirror.cg("a/b"))
    start_faulty(mirror)
    passes = mirror.full_passes()
    os.mkdir(mirror.cg("boom"))
    os.mkdir(mirror.cg("a/b/after"))  # its event is queued behind boom's
    wait_for(lambda: os.path.exists(mirror.stat_path("a/b/after")), 15, "a/b/after mirrored")
    wait_for(lambda: os.path.exists(mirror.stat_path("boom")), 15, "boom mirrored by the full pass")
    wait_for(lambda: mirror.full_passes() > passes, 15, "the full pass recorded")
    entry = wait_restarted(mirror, "cgroup")
    assert "injected: a callback raised" in str(entry["reason"]), entry
    os.mkdir(mirror.cg("a/b/later"))  # below directories the new watcher had to watch again
    wait_for(lambda: os.path.exists(mirror.stat_path("a/b/later")), 15, "a/b/later mirrored by its event")
    daemon = mirror.status()["daemon"]
    assert isinstance(daemon, dict) and daemon["watcher_restarts"] == 1, daemon
    assert exported_restarts(mirror, monkeypatch) == 1
    assert len(restarts(mirror)) == 1  # logged once


def test_cgroup_reader_whose_fd_was_closed_is_replaced(mirror: Mirror) -> None:
    """The inotify fd closed under the reader (from another thread): a fresh instance whose marks are
    exactly the tree's directories, and the next mkdir is mirrored by its event."""
    os.makedirs(mirror.cg("a/b"))
    proc = start_faulty(mirror)
    proc.send_signal(signal.SIGUSR1)
    os.mkdir(mirror.cg("a/b/after"))
    wait_for(lambda: os.path.exists(mirror.stat_path("a/b/after")), 15, "a/b/after mirrored")
    entry = wait_restarted(mirror, "cgroup")
    assert "closed" in str(entry["reason"]), entry
    want = sorted(dir_inodes(mirror.cgroup_root))
    wait_for(lambda: sorted(inotify_marks(proc.pid)) == want, 15, "the new instance's marks")
    os.mkdir(mirror.cg("a/b/later"))
    wait_for(lambda: os.path.exists(mirror.stat_path("a/b/later")), 15, "a/b/later mirrored by its event")
    assert len(restarts(mirror)) == 1


@contextmanager
def mount_table_change() -> Iterator[None]:
    """A tmpfs mounted on a temp dir (the mount table changes), unmounted after."""
    path = tempfile.mkdtemp(prefix="bpffs-sync-mnt-")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "none", path], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", path], check=False)
    finally:
        os.rmdir(path)


def _v1_mirrored_after_restart(mirror: Mirror, name: str) -> None:
    """A hierarchy mounted now (seen only through the mount table) and a cgroup in it: mirrored."""
    with mounted_v1_hierarchy(f"none,{name}") as path:
        os.makedirs(os.path.join(path, "late/child"))
        wait_for(lambda: os.path.isdir(os.path.join(mirror.bpffs, "cgroup-v1", name, "late/child")), 15,
                 "the hierarchy mounted after the restart mirrored")


def test_mount_reader_killed_by_its_callback_is_replaced(mirror: Mirror) -> None:
    """The mount watcher's hint raising ends its thread; a new one sees a v1 hierarchy mounted later."""
    name = f"name=bpffs-test-{uuid.uuid4().hex[:8]}"
    start_faulty(mirror, "--v1", name, env={"BPFFS_SYNC_TEST_MOUNTS_RAISE": "1"})
    with mount_table_change():
        _v1_mirrored_after_restart(mirror, name)
    entry = wait_restarted(mirror, "mounts")
    assert "injected: the mount hint raised" in str(entry["reason"]), entry


def test_mount_reader_whose_fd_was_closed_is_replaced(mirror: Mirror) -> None:
    """The mountinfo fd closed under the mount watcher: a new one sees a v1 hierarchy mounted later."""
    name = f"name=bpffs-test-{uuid.uuid4().hex[:8]}"
    proc = start_faulty(mirror, "--v1", name)
    proc.send_signal(signal.SIGUSR2)
    _v1_mirrored_after_restart(mirror, name)
    entry = wait_restarted(mirror, "mounts")
    assert "closed" in str(entry["reason"]), entry
