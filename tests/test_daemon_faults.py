"""The daemon's error boundary against real faults (issue 8, class 6): an unwritable status
document, a bpffs that refuses writes for a while, stale map entries of gone hierarchies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid

from helpers import Mirror, wait_for

from bpffs_sync.programs import lookup
from bpffs_sync.rundir import telemetry_path


def spawn(mirror: Mirror) -> subprocess.Popen[str]:
    """The daemon as a subprocess, owned by the mirror fixture (which stops it), without waiting
    for its status document."""
    mirror.log_path = os.path.join(mirror.run_dir, f"daemon-{uuid.uuid4().hex[:6]}.log")
    with open(mirror.log_path, "w", encoding="utf-8") as log:
        mirror.proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "run", *mirror.args(),
             "--resync-interval", "3600"],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **mirror.env})
    return mirror.proc


def log_entries(mirror: Mirror, event: str) -> list[dict[str, object]]:
    out = []
    for line in mirror.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def remount(path: str, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", path], check=True, capture_output=True)


def test_unwritable_status_document_does_not_stop_the_daemon(mirror: Mirror) -> None:
    """A status document that cannot be written is logged and retried; the mirror keeps following."""
    os.makedirs(telemetry_path(mirror.bpffs, mirror.run_dir))  # a directory: the rename onto it fails
    proc = spawn(mirror)
    wait_for(lambda: any(e["step"] == "telemetry" for e in log_entries(mirror, "step_failed"))
             or proc.poll() is not None, 60, "the failed write logged")
    os.mkdir(mirror.cg("after"))
    wait_for(lambda: os.path.exists(mirror.stat_path("after")) or proc.poll() is not None, 15, "after mirrored")
    assert proc.poll() is None, mirror.log()
    failed = [e for e in log_entries(mirror, "step_failed") if e["step"] == "telemetry"]
    assert failed and all(e["reconcile_id"] for e in failed)


def test_failed_ops_are_retried_without_a_periodic_pass(mirror: Mirror) -> None:
    """A mkdir that failed (bpffs read-only for a while) is retried after a back-off, not an hour later."""
    mirror.start(resync_interval=3600)
    remount(mirror.bpffs, "ro")
    try:
        os.mkdir(mirror.cg("late"))  # one event, one pass: its mkdir fails
        wait_for(lambda: bool(log_entries(mirror, "op_failed")), 15, "the mkdir to fail")
    finally:
        remount(mirror.bpffs, "rw")
    wait_for(lambda: os.path.exists(mirror.stat_path("late")), 40, "the failed scope retried")
    assert mirror.in_sync()


def _stale_key() -> str:
    """A stats-map key (struct cg_key) of hierarchy 77, which no mounted hierarchy has: cgroup 1."""
    return " ".join(f"{b:02x}" for b in (77).to_bytes(4, "little") + bytes(4) + (1).to_bytes(8, "little"))


def _bpftool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bpftool", *args], capture_output=True, text=True, check=False)


def _has_key(map_pin: str, key: str) -> bool:
    return _bpftool("map", "lookup", "pinned", map_pin, "key", "hex", *key.split()).returncode == 0


def test_gone_hierarchies_are_forgotten_in_every_stat(mirror: Mirror) -> None:
    """Entries of a hierarchy that is gone leave every loaded stat's map, not one stat per tree."""
    stats = ("hist_oncpu", "memcg_histo")
    programs = [arg for name in stats for arg in ("--program", name)]
    mirror.cli("run", "--once", *programs, check=True)  # the maps, pinned
    key = _stale_key()
    pins = [mirror.layout.private_path(name, lookup(name).map_name()) for name in stats]
    for pin in pins:
        size = json.loads(_bpftool("-j", "map", "show", "pinned", pin).stdout)["bytes_value"]
        res = _bpftool("map", "update", "pinned", pin, "key", "hex", *key.split(), "value", "hex", *["00"] * size)
        assert res.returncode == 0, res.stderr
    assert [_has_key(pin, key) for pin in pins] == [True, True]
    mirror.cli("run", "--once", *programs, check=True)  # its first refresh sees the hierarchy set
    assert [_has_key(pin, key) for pin in pins] == [False, False]


def test_bpffs_unmount_is_not_blocked_and_a_new_instance_is_not_written(mirror: Mirror) -> None:
    """The daemon holds no fd on the bpffs between passes: an administrator's plain umount succeeds
    (no EBUSY) with the daemon running. A new bpffs mounted there is another instance, whose lock this
    daemon does not hold: it is not written, the daemon stands down (exit 2, saying why), and the next
    `run` takes it over and fills it, map and collector included."""
    os.mkdir(mirror.cg("a"))
    mirror.start(resync_interval=0.5)
    old_dev = os.stat(mirror.bpffs).st_dev
    res = subprocess.run(["umount", mirror.bpffs], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    # Anonymous device numbers are reused lowest first: a tmpfs takes the freed one, so the new bpffs
    # is told apart by its device (the lock's key; an instance on the same number shares the lock).
    squatter = tempfile.mkdtemp(prefix="bpffs-sync-squat-")
    subprocess.run(["mount", "-t", "tmpfs", "none", squatter], check=True)
    try:
        assert mirror.proc is not None and mirror.proc.poll() is None  # survives: retries, backing off
        subprocess.run(["mount", "-t", "bpf", "bpf", mirror.bpffs], check=True)
        assert os.stat(mirror.bpffs).st_dev != old_dev
    finally:
        subprocess.run(["umount", squatter], check=False)
        os.rmdir(squatter)
    proc = mirror.proc
    assert proc is not None
    assert proc.wait(timeout=60) == 2
    assert "another bpffs instance is mounted here now" in mirror.log()
    assert not {"cgroup", "bpffs-sync"} & set(os.listdir(mirror.bpffs))  # nothing written into it
    mirror.proc = None
    mirror.start()
    assert os.path.exists(mirror.stat_path("a"))
    assert mirror.cli("verify").returncode == 0
