"""Test helpers: private bpffs mounts, private cgroup subtrees, the daemon as a subprocess.

Everything made here is undone by the fixtures in conftest.py, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bpffs_sync.paths import Layout

REPO = Path(__file__).resolve().parent.parent


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def v2_mount() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    raise RuntimeError("no cgroup2 mount")


# --- bpffs ---------------------------------------------------------------------------------------


def mount_bpffs(options: str = "") -> str:
    path = tempfile.mkdtemp(prefix="bpffs-sync-test-")
    cmd = ["mount", "-t", "bpf", "bpf", path]
    if options:
        cmd[1:1] = ["-o", options]
    subprocess.run(cmd, check=True)
    return path


def umount_bpffs(path: str) -> None:
    subprocess.run(["umount", path], check=False)
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], check=False)
    os.rmdir(path)


# --- cgroups -------------------------------------------------------------------------------------


def make_cgroup_root() -> str:
    path = os.path.join(v2_mount(), f"bpffs-sync-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    return path


def remove_cgroup_tree(root: str) -> None:
    """Kill every process below root, then rmdir post-order (retrying while tasks exit)."""
    if not os.path.isdir(root):
        return
    kill = os.path.join(root, "cgroup.kill")
    if os.path.exists(kill):
        with open(kill, "w", encoding="ascii") as f:
            f.write("1")
    deadline = time.monotonic() + 10
    while os.path.isdir(root):
        dirs = [d for d, _, _ in os.walk(root)]
        for d in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


# --- the daemon and the CLI ----------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, check: bool = False,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-m", "bpffs_sync", *args], capture_output=True, text=True,
                         env=full_env, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"bpffs-sync {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


@dataclass
class Mirror:
    """A private bpffs + a private cgroup subtree + (optionally) a daemon mirroring one into the other."""

    bpffs: str
    cgroup_root: str
    run_dir: str
    proc: subprocess.Popen[str] | None = None
    log_path: str = ""
    extra: list[str] = field(default_factory=list)

    @property
    def layout(self) -> Layout:
        return Layout(self.bpffs, self.cgroup_root)

    @property
    def env(self) -> dict[str, str]:
        return {"BPFFS_SYNC_RUN_DIR": self.run_dir}

    def args(self) -> list[str]:
        return ["--bpffs", self.bpffs, "--cgroup-root", self.cgroup_root]

    def cli(self, cmd: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return cli(cmd, *self.args(), *args, env=self.env, check=check)

    def status(self) -> dict[str, object]:
        res = self.cli("status", "--json", check=True)
        doc: dict[str, object] = json.loads(res.stdout)
        return doc

    def full_passes(self) -> int:
        path = os.path.join(self.run_dir, os.path.realpath(self.bpffs).strip("/").replace("/", "_") + ".json")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return 0
        if self.proc is None or doc.get("pid") != self.proc.pid:
            return 0
        return int(doc.get("full_passes", 0))

    def start(self, *args: str, resync_interval: float = 30.0) -> None:
        assert self.proc is None, "daemon already running"
        self.log_path = os.path.join(self.run_dir, f"daemon-{uuid.uuid4().hex[:6]}.log")
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the Popen
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "run", *self.args(),
             "--resync-interval", str(resync_interval), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **self.env},
        )
        log.close()
        try:
            wait_for(lambda: self.full_passes() >= 1 or self.proc is None or self.proc.poll() is not None,
                     60, "the daemon's first full pass")
        finally:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(encoding="utf-8")
        except OSError:
            return ""

    def in_sync(self) -> bool:
        return self.cli("verify").returncode == 0

    def stat_path(self, rel: str, stat: str = "hist_oncpu") -> str:
        return os.path.join(self.bpffs, "cgroup", rel, stat) if rel else os.path.join(self.bpffs, "cgroup", stat)

    def cg(self, rel: str) -> str:
        return os.path.join(self.cgroup_root, rel)
