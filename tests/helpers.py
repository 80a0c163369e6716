"""Test helpers: private bpffs mounts, private cgroup subtrees, the daemon as a subprocess.

Everything made here is undone by the fixtures in conftest.py, also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bpffs_sync.paths import Layout, RelPath
from bpffs_sync.rundir import telemetry_path
from bpffs_sync.sandbox import wait_until

wait_for = wait_until

REPO = Path(__file__).resolve().parent.parent
USER_SPACE_CMDS = ("run", "verify", "status", "clean")  # the commands that take a mode


def cli(*args: str, env: dict[str, str] | None = None, check: bool = False,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-m", "bpffs_sync", *args], capture_output=True, text=True,
                         env=full_env, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"bpffs-sync {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2 and exactly one `bpffs-sync: error: ...` line holding every needle; no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bpffs-sync: error: "), lines[0]
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


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
        """`bpffs-sync cmd` on this mirror; the user-space backend (these tests are its), unless args
        name a mode themselves."""
        own = any(a in ("--kernel", "--user-space", "--approach") for a in args)
        mode = ["--user-space"] if cmd in USER_SPACE_CMDS and not own else []
        return cli(cmd, *self.args(), *mode, *args, env=self.env, check=check)

    def status(self) -> dict[str, object]:
        res = self.cli("status", "--json", check=True)
        doc: dict[str, object] = json.loads(res.stdout)
        return doc

    def full_passes(self) -> int:
        path = telemetry_path(self.bpffs, self.run_dir)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return 0
        if self.proc is None or doc.get("pid") != self.proc.pid:
            return 0
        return int(doc.get("full_passes", 0))

    def start(self, *args: str, resync_interval: float = 30.0, preexec: Callable[[], None] | None = None) -> None:
        """preexec: run in the child before exec (e.g. a setrlimit)."""
        assert self.proc is None, "daemon already running"
        self.log_path = os.path.join(self.run_dir, f"daemon-{uuid.uuid4().hex[:6]}.log")
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the Popen
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "run", *self.args(), "--user-space",
             "--resync-interval", str(resync_interval), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **self.env},
            preexec_fn=preexec,  # noqa: PLW1509 - setrlimit only: no lock a thread could hold
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


@contextmanager
def mirror_on(bpffs: str, cgroup_root: str) -> Iterator[Mirror]:
    """A Mirror of bpffs and cgroup_root with a run dir of its own; after, whatever happened: its
    daemon (if started) stopped, the mirror unpinned, the run dir removed."""
    run_dir = tempfile.mkdtemp(prefix="bpffs-sync-run-")
    m = Mirror(bpffs, cgroup_root, run_dir)
    try:
        yield m
    finally:
        m.stop()
        # Unpin the mirror before the cgroups go: a pin keeps a removed cgroup alive.
        shutil.rmtree(os.path.join(bpffs, "cgroup"), ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


class Hints:
    """A CgroupWatcher's hint callback that keeps every hint (`seen`), thread-safe."""

    def __init__(self) -> None:
        self.seen: list[RelPath | None] = []
        self._lock = threading.Lock()

    def __call__(self, rel: RelPath | None) -> None:
        with self._lock:
            self.seen.append(rel)


def mkdir_chain(top: str, names: Iterable[str | bytes]) -> None:
    """mkdir top/names[0]/names[1]/... one level at a time relative to directory fds (the chain's
    path may be longer than PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


class Burst(threading.Thread):
    """mkdir cgroups <root>/<prefix>/c<i // 20>/d<i> back to back in a thread, up to `limit` or until
    stopped; `made` counts them."""

    def __init__(self, root: str, prefix: str, limit: int = 20000) -> None:
        super().__init__(daemon=True)
        self.root, self.prefix, self.limit = root, prefix, limit
        self.made = 0
        self.halt = threading.Event()

    def rel(self, i: int) -> str:
        return f"{self.prefix}/c{i // 20}/d{i}"

    def run(self) -> None:
        for i in range(self.limit):
            if self.halt.is_set():
                return
            os.makedirs(os.path.join(self.root, self.rel(i)), exist_ok=True)
            self.made = i + 1


def kill9_mid_burst(mirror: Mirror, burst: Burst, first_mirrored: str, after: int = 50) -> int:
    """Start burst; once the daemon has mirrored the burst's first cgroup (first_mirrored exists),
    SIGKILL it; let the burst make `after` more cgroups, then stop it. Fails unless cgroups were
    made both before and after the daemon died, i.e. the kill landed mid-burst. Returns how many
    cgroups the burst made in all."""
    burst.start()
    try:
        wait_for(lambda: os.path.exists(first_mirrored), 60, "the burst's first cgroup mirrored")
        assert mirror.stop(signal.SIGKILL) == -signal.SIGKILL
        made_at_kill = burst.made
        wait_for(lambda: burst.made >= made_at_kill + after or not burst.is_alive(), 60, "the burst to go on")
    finally:
        burst.halt.set()
        burst.join()
    assert 0 < made_at_kill < burst.made, f"not mid-burst: {made_at_kill} of {burst.made} made at the kill"
    return burst.made
