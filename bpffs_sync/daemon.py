"""`bpffs-sync run`: load the stat programs, then keep the mirror in step with cgroupfs.

    cgroupfs --inotify--> CgroupWatcher --scope--> HintQueue --> worker --> Reconciler.reconcile(*scopes)
    start-up / overflow / every --resync-interval (±10 % jitter) ------> Reconciler.reconcile(())

The worker takes every pending hint at once and runs one pass over all of them (one diff, one
apply), so a burst of N mkdirs costs a few passes, not N.

The watcher starts before the first full pass, so nothing made during start-up is missed. One
worker (this thread) runs passes, so two passes never race on the same path. SIGTERM/SIGINT end
the loop and leave the mirror and the pinned collectors in place: a restart adopts them.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import FrameType

from . import log
from .errors import EnvironmentProblem, SyncError
from .paths import Layout, RelPath
from .programs import StatProgram
from .reconciler import PassResult, Reconciler
from .stats import LoadedStat
from .watch import CgroupWatcher

_log = log.get(__name__)
MAX_BACKOFF = 30.0  # seconds between retries of a pass that keeps failing
RUN_DIR = os.environ.get("BPFFS_SYNC_RUN_DIR", "/run/bpffs-sync")


# --- the hint queue ------------------------------------------------------------------------------


class HintQueue:
    """De-duplicating queue of scopes; a full-resync request absorbs everything pending."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._scopes: dict[RelPath, None] = {}
        self._full = False

    def put(self, scope: RelPath | None) -> None:
        with self._cond:
            if scope is None:
                self._full = True
                self._scopes.clear()
            elif not self._full:
                self._scopes[scope] = None
            self._cond.notify()

    def take(self, timeout: float) -> tuple[bool, list[RelPath]]:
        """Wait up to timeout; returns (full, scopes) and empties the queue."""
        with self._cond:
            if not self._full and not self._scopes:
                self._cond.wait(timeout)
            full, scopes = self._full, list(self._scopes)
            self._full = False
            self._scopes.clear()
        return full, scopes


# --- status file and single-instance lock ---------------------------------------------------------


def state_key(bpffs: str) -> str:
    real = os.path.realpath(bpffs)
    return real.strip("/").replace("/", "_") or "root"


def status_path(bpffs: str, run_dir: str = RUN_DIR) -> str:
    """Where the daemon for this bpffs writes its telemetry (run_dir: another daemon's RUN_DIR)."""
    return os.path.join(run_dir, state_key(bpffs) + ".json")


@contextmanager
def instance_lock(bpffs: str) -> Iterator[None]:
    """One daemon per bpffs: an flock on /run/bpffs-sync/<key>.lock, held while running."""
    os.makedirs(RUN_DIR, exist_ok=True)
    path = os.path.join(RUN_DIR, state_key(bpffs) + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise EnvironmentProblem(
                "run", bpffs, 0, f"another bpffs-sync run holds this bpffs (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclass(slots=True)
class Telemetry:
    """What `status` shows about a running daemon. Not state: the kernel is the truth."""

    layout: Layout
    programs: list[str]
    started_at: float = field(default_factory=time.time)
    passes: int = 0
    full_passes: int = 0
    ops_applied: int = 0
    op_errors: int = 0
    last_pass_at: float = 0.0
    last_full_at: float = 0.0
    last_full_seconds: float = 0.0
    last_error: str = ""
    watches: int = 0
    collectors: dict[str, str] = field(default_factory=dict)

    def record(self, res: PassResult) -> None:
        self.passes += 1
        self.last_pass_at = time.time()
        if res.full:
            self.full_passes += 1
            self.last_full_at = self.last_pass_at
            self.last_full_seconds = res.seconds
        self.ops_applied += sum(res.applied.done.values())
        self.op_errors += len(res.applied.errors)
        if res.applied.errors:
            self.last_error = res.applied.errors[-1]

    def write(self) -> None:
        doc = {k: v for k, v in asdict(self).items() if k != "layout"}
        doc.update(pid=os.getpid(), bpffs=self.layout.bpffs, cgroup_root=self.layout.cgroup_root)
        path = status_path(self.layout.bpffs)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)


# --- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    resync_interval: float = 30.0
    watch: bool = True
    once: bool = False
    force_raw_tp: bool = False


def _jittered(interval: float) -> float:
    return interval * random.uniform(0.9, 1.1)


class Daemon:
    def __init__(self, layout: Layout, specs: list[StatProgram], opts: RunOptions) -> None:
        self.layout = layout
        self.specs = specs
        self.opts = opts
        self.queue = HintQueue()
        self.stop_event = threading.Event()
        self.telemetry = Telemetry(layout, [s.name for s in specs])
        self.failures = 0  # consecutive failed passes

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stop_event.set()
        self.queue.put(None)  # wake the worker

    def _pass(self, reconciler: Reconciler, scopes: list[RelPath]) -> None:
        try:
            res = reconciler.reconcile(*scopes)
        except SyncError as err:
            self.failures += 1
            backoff = min(MAX_BACKOFF, 0.1 * 2**self.failures)
            _log.warning("reconcile_failed", scopes=len(scopes), error=str(err), errno=err.errno,
                         retry_in=backoff)
            self.telemetry.last_error = str(err)
            self.queue.put(None)  # heal by a full pass, after an exponential back-off
            self.stop_event.wait(backoff)
            return
        self.failures = 0
        self.telemetry.record(res)

    def run(self) -> int:
        """Load, watch, loop until stopped. The caller holds the instance lock."""
        stats: dict[str, LoadedStat] = {}
        watcher: CgroupWatcher | None = None
        try:
            for spec in self.specs:
                loaded = LoadedStat(self.layout, spec, force_raw_tp=self.opts.force_raw_tp)
                stats[spec.name] = loaded
                self.telemetry.collectors[spec.name] = loaded.collector
            reconciler = Reconciler(self.layout, stats)
            if self.opts.watch and not self.opts.once:
                watcher = CgroupWatcher(self.layout.cgroup_root, self.queue.put)
                watcher.start()
            self._loop(reconciler, watcher)
        finally:
            if watcher is not None:
                watcher.stop()
            for loaded in stats.values():
                loaded.close()
        return 0

    def _loop(self, reconciler: Reconciler, watcher: CgroupWatcher | None) -> None:
        next_full = 0.0  # the first pass is a full one
        while not self.stop_event.is_set():
            now = time.monotonic()
            full, scopes = (True, []) if now >= next_full else self.queue.take(next_full - now)
            if self.stop_event.is_set():
                break
            if full or time.monotonic() >= next_full:
                if watcher is not None:
                    watcher.resync()
                self._pass(reconciler, [()])
                next_full = time.monotonic() + _jittered(self.opts.resync_interval)
            else:  # every hint taken together: one pass, one diff, however large the burst
                self._pass(reconciler, scopes)
            self.telemetry.watches = watcher.watch_count if watcher is not None else 0
            self.telemetry.write()
            if self.opts.once:
                break
        _log.info("stopping", passes=self.telemetry.passes)


def run(layout: Layout, specs: list[StatProgram], opts: RunOptions) -> int:
    daemon = Daemon(layout, specs, opts)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    with instance_lock(layout.bpffs):
        _log.info("starting", bpffs=layout.bpffs, cgroup_root=layout.cgroup_root,
                  programs=[s.name for s in specs], resync_interval=opts.resync_interval, watch=opts.watch)
        return daemon.run()
