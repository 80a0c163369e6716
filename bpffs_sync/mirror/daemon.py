"""`bpffs-sync run`: load the stat programs, then keep the mirrors in step with cgroupfs.

    cgroupfs --inotify--> CgroupWatcher --(tree, scope)--> HintQueue --> worker --> Reconciler.reconcile(*scopes)
    mount table --poll--> MountWatcher --(MOUNTS, ())----> HintQueue --> worker --> Mirrors.refresh()
    start-up / overflow / every --resync-interval (±10 % jitter) --> refresh + every tree's Reconciler.reconcile(())

One tree is the v2 hierarchy; `--v1` adds one tree per selected v1 hierarchy (mirrors.py). Every
tree has its own Reconciler instance of the same class; hints carry the tree they belong to.
The worker takes every pending hint at once and runs one pass per tree over all of them (one
diff, one apply), so a burst of N mkdirs costs a few passes, not N.

The watcher starts before the first full pass, so nothing made during start-up is missed. One
worker (this thread) runs passes, so two passes never race on the same path. SIGTERM/SIGINT end
the loop and leave the mirror and the pinned collectors in place: a restart adopts them.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Generic, TypeVar

from bpffs_sync import log, rundir
from bpffs_sync.errors import SyncError
from bpffs_sync.mirror.forest import Selection, Tree
from bpffs_sync.mirror.mirrors import Mirrors, TreeHint
from bpffs_sync.mirror.reconciler import PassResult
from bpffs_sync.mirror.watch import MountWatcher
from bpffs_sync.paths import Layout, RelPath
from bpffs_sync.programs import StatProgram, lookup
from bpffs_sync.stats import LoadedStat

_log = log.get(__name__)
MAX_BACKOFF = 30.0  # seconds between retries of a pass that keeps failing
MOUNTS = "\0mounts"  # the tree key of "the mount table changed": re-discover the v1 hierarchies

T = TypeVar("T", bound=Hashable)

# --- the hint queue ------------------------------------------------------------------------------


class HintQueue(Generic[T]):
    """De-duplicating queue of hints (scopes); a full-resync request absorbs everything pending."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._scopes: dict[T, None] = {}
        self._full = False

    def put(self, scope: T | None) -> None:
        with self._cond:
            if scope is None:
                self._full = True
                self._scopes.clear()
            elif not self._full:
                self._scopes[scope] = None
            self._cond.notify()

    def take(self, timeout: float) -> tuple[bool, list[T]]:
        """Wait up to timeout; returns (full, scopes) and empties the queue."""
        with self._cond:
            if not self._full and not self._scopes:
                self._cond.wait(timeout)
            full, scopes = self._full, list(self._scopes)
            self._full = False
            self._scopes.clear()
        return full, scopes


# --- telemetry (the run directory, lock and liveness are rundir.py's) ----------------------------


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
    trees: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: rundir.RunFiles | None = None  # set once the instance lock is held; not part of the document

    def record(self, res: PassResult) -> None:
        self.passes += 1
        self.last_pass_at = time.time()
        self.ops_applied += sum(res.applied.done.values())
        self.op_errors += len(res.applied.errors)
        if res.applied.errors:
            self.last_error = res.applied.errors[-1]

    def write(self) -> None:
        """The document `status` shows, stamped with our pid and start time: status shows it only
        while that very process holds the lock (rundir.read_telemetry)."""
        if self.files is None:
            return
        doc = {k: v for k, v in asdict(self).items() if k not in ("layout", "files")}
        doc.update(pid=os.getpid(), start_time=rundir.start_time(os.getpid()), bpffs=self.layout.bpffs,
                   cgroup_root=self.layout.cgroup_root)
        rundir.write_telemetry(self.files, doc)


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
    def __init__(self, layout: Layout, specs: list[StatProgram], opts: RunOptions,
                 selection: Selection | None = None) -> None:
        self.layout = layout
        self.specs = specs
        self.opts = opts
        self.selection = selection
        self.queue: HintQueue[TreeHint] = HintQueue()
        self.stop_event = threading.Event()
        self.telemetry = Telemetry(layout, [s.name for s in specs])
        self.failures = 0  # consecutive failed passes
        self.stats: dict[str, LoadedStat] = {}

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stop_event.set()
        self.queue.put(None)  # wake the worker

    def _load(self, name: str) -> LoadedStat:
        """A stat program, loaded (or adopted) the first time a tree needs it; shared by all trees."""
        loaded = self.stats.get(name)
        if loaded is None:
            loaded = LoadedStat(self.layout, lookup(name), force_raw_tp=self.opts.force_raw_tp)
            self.stats[name] = loaded
            self.telemetry.collectors[name] = loaded.collector_name
        return loaded

    def _pass(self, mirrors: Mirrors, key: str, scopes: list[RelPath]) -> None:
        try:
            res = mirrors.reconcile(key, scopes)
        except SyncError as err:
            self.failures += 1
            backoff = min(MAX_BACKOFF, 0.1 * 2**self.failures)
            _log.warning("reconcile_failed", tree=key, scopes=len(scopes), error=str(err), errno=err.errno,
                         retry_in=backoff)
            self.telemetry.last_error = str(err)
            self.queue.put(None)  # heal by a full pass, after an exponential back-off
            self.stop_event.wait(backoff)
            return
        self.failures = 0
        if res is not None:
            self.telemetry.record(res)

    def run(self) -> int:
        """Load, watch, loop until stopped. The caller holds the instance lock."""
        watching = self.opts.watch and not self.opts.once
        base = Tree(self.layout, tuple(s.name for s in self.specs))
        mirrors = Mirrors(base, self.selection, self._load, self.queue.put, watching)
        mounts = MountWatcher(lambda: self.queue.put((MOUNTS, ()))) if watching and self.selection else None
        try:
            for spec in self.specs:
                self._load(spec.name)
            if mounts is not None:
                mounts.start()
            self._loop(mirrors)
        finally:
            if mounts is not None:
                mounts.stop()
            mirrors.close()
            for loaded in self.stats.values():
                loaded.close()
        return 0

    def _full_round(self, mirrors: Mirrors) -> None:
        started = time.monotonic()
        mirrors.refresh()
        mirrors.resync_watches()
        for key in list(mirrors.active):
            self._pass(mirrors, key, [()])
        self.telemetry.full_passes += 1
        self.telemetry.last_full_at = time.time()
        self.telemetry.last_full_seconds = time.monotonic() - started

    def _hinted_round(self, mirrors: Mirrors, hints: list[TreeHint]) -> None:
        """Every hint taken together: one pass per tree, however large the burst."""
        by_tree: dict[str, list[RelPath]] = {}
        for key, scope in hints:
            by_tree.setdefault(key, []).append(scope)
        if by_tree.pop(MOUNTS, None) is not None:
            for key in mirrors.refresh():
                by_tree[key] = [()]
        for key, scopes in by_tree.items():
            self._pass(mirrors, key, scopes)

    def _loop(self, mirrors: Mirrors) -> None:
        next_full = 0.0  # the first pass is a full one
        while not self.stop_event.is_set():
            now = time.monotonic()
            full, hints = (True, []) if now >= next_full else self.queue.take(next_full - now)
            if self.stop_event.is_set():
                break
            if full or time.monotonic() >= next_full:
                self._full_round(mirrors)
                next_full = time.monotonic() + _jittered(self.opts.resync_interval)
            else:
                self._hinted_round(mirrors, hints)
            self.telemetry.watches = mirrors.watch_count
            self.telemetry.trees = mirrors.describe()
            self.telemetry.write()
            if self.opts.once:
                break
        _log.info("stopping", passes=self.telemetry.passes)


def run(layout: Layout, specs: list[StatProgram], opts: RunOptions, selection: Selection | None = None) -> int:
    daemon = Daemon(layout, specs, opts, selection)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    with rundir.exclusive(layout.bpffs, rundir.ROLE_RUN) as files:
        daemon.telemetry.files = files
        _log.info("starting", bpffs=layout.bpffs, cgroup_root=layout.cgroup_root,
                  programs=[s.name for s in specs], resync_interval=opts.resync_interval, watch=opts.watch,
                  v1=selection.selectors if selection else [])
        return daemon.run()
