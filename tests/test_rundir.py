"""One daemon per bpffs superblock, and the lock is the truth about liveness (rundir.py, preflight)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import Mirror, assert_one_line_error, cli, wait_for

from bpffs_sync import libbpf, rundir
from bpffs_sync.backends import kernel_a1
from bpffs_sync.loader import COLLECTOR_PIN
from bpffs_sync.paths import PRIVATE_DIR
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import private_bpffs


@contextmanager
def bind_mount(src: str) -> Iterator[str]:
    """`mount --bind src <tmpdir>`, undone (lazily if busy) whatever happens."""
    path = tempfile.mkdtemp(prefix="bpffs-sync-bind-")
    try:
        subprocess.run(["mount", "--bind", src, path], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", path], check=False)
    finally:
        os.rmdir(path)


_BLOCK_SIGTERM = [sys.executable, "-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, "
                  "{signal.SIGTERM}); os.execvp(sys.argv[1], sys.argv[1:])"]  # then exec argv[1:], same pid


def sigterm_pending(pid: int) -> bool:
    """Was SIGTERM sent to pid? Our helper processes block it, so a sent one stays pending, visibly."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    bit = 1 << (signal.SIGTERM - 1)
    return bool((int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)) & bit)


@contextmanager
def flock_holder(lock_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """flock(1) holding lock_path exclusively in another process (SIGTERM blocked) until the block ends."""
    proc = subprocess.Popen([*_BLOCK_SIGTERM, "flock", "--exclusive", "--nonblock", lock_path, "sleep", "600"])
    try:
        wait_for(lambda: proc.poll() is not None or _flock_held(lock_path), 10, "flock(1) to take the lock")
        assert proc.poll() is None, "flock(1) could not take the lock"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _flock_held(lock_path: str) -> bool:
    try:
        st = os.stat(lock_path)
    except FileNotFoundError:
        return False
    with open(rundir.PROC_LOCKS, encoding="ascii") as f:
        return bool(rundir.parse_lock_holders(f.read(), st.st_dev, st.st_ino))


@contextmanager
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that has nothing to do with bpffs-sync (its pid goes into stale files; SIGTERM blocked)."""
    proc = subprocess.Popen([*_BLOCK_SIGTERM, "sleep", "600"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _lock_path(m: Mirror) -> str:
    return rundir.files_for(m.bpffs, m.run_dir).lock_path


def _plant_stale_files(m: Mirror, pid: int) -> None:
    """What a daemon that died by SIGKILL leaves, but naming `pid` (as if the pid had been reused)."""
    files = rundir.files_for(m.bpffs, m.run_dir)
    with open(files.lock_path, "w", encoding="ascii") as f:
        f.write(f"{pid} {rundir.start_time(pid)} run\n")
    with open(files.telemetry_path, "w", encoding="utf-8") as f:
        json.dump({"pid": pid, "start_time": rundir.start_time(pid), "passes": 7, "full_passes": 1}, f)


# --- class 4: one daemon per superblock, no nesting ----------------------------------------------


def test_second_daemon_through_bind_mount_is_refused(mirror: Mirror) -> None:
    """A bind mount of the same bpffs reaches the same lock: the second daemon exits 2, naming the first."""
    mirror.start()
    assert mirror.proc is not None
    with bind_mount(mirror.bpffs) as other:
        res = cli("run", "--bpffs", other, "--cgroup-root", mirror.cgroup_root, "--once", env=mirror.env)
    assert_one_line_error(res, f"bpffs-sync run (pid {mirror.proc.pid}) holds this bpffs")


def test_bpffs_inside_a_running_mirror_is_refused(mirror: Mirror) -> None:
    """--bpffs <bpffs>/cgroup/x while a daemon runs on <bpffs>: not the root of a bpffs, exit 2."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    res = cli("run", "--bpffs", os.path.join(mirror.bpffs, "cgroup", "x"), "--cgroup-root", mirror.cgroup_root,
              "--once", env=mirror.env)
    assert_one_line_error(res, "not the root of a bpf filesystem", mirror.bpffs)


def test_bind_mount_of_a_bpffs_subdirectory_is_refused(mirror: Mirror) -> None:
    """A bind mount of <bpffs>/cgroup/x elsewhere is a mount point, but not of a whole bpffs: exit 2."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    with bind_mount(os.path.join(mirror.bpffs, "cgroup", "x")) as sub:
        res = cli("run", "--bpffs", sub, "--cgroup-root", mirror.cgroup_root, "--once", env=mirror.env)
    assert_one_line_error(res, "a bind mount of /cgroup/x inside a bpf filesystem")


def test_bpffs_mounted_inside_a_mirror_is_refused(mirror: Mirror) -> None:
    """A separate bpffs mounted on a directory of another bpffs's mirror: exit 2."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    inner = os.path.join(mirror.bpffs, "cgroup", "x")
    subprocess.run(["mount", "-t", "bpf", "bpf", inner], check=True)
    try:
        res = cli("run", "--bpffs", inner, "--cgroup-root", mirror.cgroup_root, "--once", env=mirror.env)
    finally:
        subprocess.run(["umount", "-l", inner], check=False)
    assert_one_line_error(res, "mounted inside the mirror of the bpffs at", mirror.bpffs)


def test_two_bpffs_instances_get_two_locks(mirror: Mirror) -> None:
    """The lock is per superblock, not global: a daemon on another bpffs instance runs beside the first."""
    mirror.start()
    with private_bpffs() as other:
        res = cli("run", "--bpffs", other, "--cgroup-root", mirror.cgroup_root, "--once", env=mirror.env)
        subprocess.run(["rm", "-rf", os.path.join(other, "cgroup")], check=False)
        assert rundir.superblock_key(mirror.bpffs) != rundir.superblock_key(other)
    assert res.returncode == 0, res.stderr


# --- class 6: liveness is the lock ---------------------------------------------------------------


def test_status_with_stale_files_and_live_pid_says_not_running(mirror: Mirror) -> None:
    """Lock file and telemetry naming a live unrelated pid, nobody holding the lock: not running."""
    with bystander() as other:
        _plant_stale_files(mirror, other.pid)
        doc = mirror.status()["daemon"]
    assert doc == {"running": False}


def test_status_says_running_while_another_process_holds_the_lock(mirror: Mirror) -> None:
    """flock(1) holding the lock file is a holder: running, its pid, no telemetry of ours shown."""
    _plant_stale_files(mirror, os.getpid())
    with flock_holder(_lock_path(mirror)) as proc:
        doc = mirror.status()["daemon"]
        text = mirror.cli("status", check=True).stdout
    assert doc == {"running": True, "pid": proc.pid, "role": "?"}
    assert f"daemon   running (pid {proc.pid}), not a bpffs-sync run" in text


def test_status_shows_the_holders_telemetry(mirror: Mirror) -> None:
    """A real daemon: running, its pid, and the telemetry it wrote."""
    mirror.start()
    assert mirror.proc is not None
    doc = mirror.status()["daemon"]
    assert isinstance(doc, dict)
    assert (doc["running"], doc["pid"], doc["role"]) == (True, mirror.proc.pid, "run")
    assert doc["full_passes"] >= 1 and doc["start_time"] == rundir.start_time(mirror.proc.pid)


def test_stop_leaves_a_stale_pid_alone(mirror: Mirror) -> None:
    """`stop` with a stale lock file naming a live unrelated process: nothing signalled, exit 0."""
    with bystander() as other:
        _plant_stale_files(mirror, other.pid)
        res = cli("stop", "--bpffs", mirror.bpffs, env=mirror.env)
        assert not sigterm_pending(other.pid)
    assert res.returncode == 0 and res.stdout.startswith("no bpffs-sync run holds"), res


def test_stop_refuses_a_holder_that_is_not_a_daemon(mirror: Mirror) -> None:
    """A lock holder whose pid and start time are not in the lock file is not ours to signal: exit 2."""
    _plant_stale_files(mirror, os.getpid())
    with flock_holder(_lock_path(mirror)) as proc:
        res = cli("stop", "--bpffs", mirror.bpffs, env=mirror.env)
        assert not sigterm_pending(proc.pid)
    assert_one_line_error(res, f"pid {proc.pid} holds the lock and is not a bpffs-sync run")


def test_stop_stops_the_daemon_through_a_bind_mount(mirror: Mirror) -> None:
    """`stop` on a bind mount of the daemon's bpffs: SIGTERM to the holder, which exits 0 and lets go."""
    mirror.start()
    proc = mirror.proc
    assert proc is not None
    with bind_mount(mirror.bpffs) as other:
        res = cli("stop", "--bpffs", other, env=mirror.env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"stopped bpffs-sync run (pid {proc.pid}) on {other}"
    assert proc.wait(timeout=20) == 0
    assert mirror.status()["daemon"] == {"running": False}


def test_signal_holder_skips_a_reused_pid(mirror: Mirror) -> None:
    """A holder whose start time differs from what was seen (the pid was reused) is not signalled."""
    with flock_holder(_lock_path(mirror)) as proc:
        seen = rundir.holder(mirror.bpffs, mirror.run_dir)
        assert seen is not None and seen.pid == proc.pid and seen.start_time is not None
        reused = rundir.Holder(seen.pid, seen.start_time - 1, "run", True)
        assert not rundir.signal_holder(mirror.bpffs, reused, signal.SIGTERM, mirror.run_dir)
        assert not sigterm_pending(proc.pid)
        assert rundir.signal_holder(mirror.bpffs, seen, signal.SIGTERM, mirror.run_dir)
        assert sigterm_pending(proc.pid)


def test_clean_is_refused_while_the_lock_is_held(mirror: Mirror) -> None:
    """clean takes the lock itself: refused while anyone holds it, and nothing is removed."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    mirror.stop()
    with flock_holder(_lock_path(mirror)) as proc:
        res = mirror.cli("clean")
    assert_one_line_error(res, f"pid {proc.pid} holds this bpffs")
    assert os.path.exists(mirror.stat_path("x"))


def test_plain_clean_refuses_while_kernel_links_use_the_collectors(mirror: Mirror) -> None:
    """A kernel link pin (native_link) beside a stat's collector: plain clean refuses and removes nothing."""
    os.mkdir(mirror.cg("x"))
    mirror.start()
    mirror.stop()
    private = os.path.join(mirror.bpffs, PRIVATE_DIR, "hist_oncpu")
    # A stand-in for the link `run --kernel` pins there (a stock kernel has no cgroup stat link): any link.
    fd = libbpf.obj_get(os.path.join(private, COLLECTOR_PIN))
    try:
        libbpf.obj_pin(fd, os.path.join(private, kernel_a1.A1_LINK_PIN))
    finally:
        os.close(fd)
    res = mirror.cli("clean")
    assert_one_line_error(res, "kernel links use the collectors of hist_oncpu", "clean --kernel")
    kept = [COLLECTOR_PIN, kernel_a1.A1_LINK_PIN, lookup("hist_oncpu").map_name()]
    assert sorted(os.listdir(private)) == sorted(kept)
    assert os.path.exists(mirror.stat_path("x"))


# --- the run directory itself --------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_run_dir_writable_by_others_is_refused(mirror: Mirror, mode: int) -> None:
    """A run directory others can write to (they could plant the lock or telemetry): exit 2."""
    os.chmod(mirror.run_dir, mode)
    assert_one_line_error(mirror.cli("run", "--once"), "run directory", "writable by nobody else")


def test_run_dir_symlink_is_refused(mirror: Mirror) -> None:
    """A run directory that is a symlink is not followed: exit 2."""
    link = mirror.run_dir + ".link"
    os.symlink(mirror.run_dir, link)
    try:
        res = cli("run", *mirror.args(), "--once", env={"BPFFS_SYNC_RUN_DIR": link})
    finally:
        os.unlink(link)
    assert_one_line_error(res, "run directory", "a symlink or not a directory")
