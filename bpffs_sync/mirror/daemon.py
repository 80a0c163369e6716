"""`bpffs-sync run`: load the stat programs, then keep the mirrors in step with cgroupfs.

    cgroupfs --inotify--> CgroupWatcher --(tree, scope)--> HintQueue --> worker --> Reconciler.reconcile(*scopes)
    mount table --poll--> MountWatcher --(MOUNTS, ())----> HintQueue --> worker --> Mirrors.refresh()
    start-up / overflow / every --resync-interval (±10 % jitter) --> refresh + every tree's Reconciler.reconcile(())

One tree is the v2 hierarchy; `--v1` adds one tree per selected v1 hierarchy (mirrors.py). Every
tree has its own Reconciler instance of the same class; hints carry the tree they belong to.
The worker takes every pending hint at once and runs one pass per tree over all of them (one
diff, one apply), so a burst of N mkdirs costs a few passes, not N. Once the mirror is built, a
tree's hints are split by top-level subtree, one pass each, the subtrees with fewest hints first,
and every pass is bounded per subtree (apply.Budget: the rest is deferred to the next pass), so a
user's subtree with a huge backlog costs others at most one bounded pass of waiting. SIGTERM ends
a pass between two operations (interrupt.py); SIGHUP's full round re-walks every mirror.

Supervision: a watcher whose reader died (an exception in its callback, its fd closed under it,
its thread ended) says so at once (on_death wakes the worker), and the worker also checks every
SUPERVISE_EVERY; the step `watchers` replaces it with a fresh one (a new inotify instance, or a
new mountinfo thread), logs `watcher_restarted` once with the reason, counts it
(telemetry.watcher_restarts) and runs a full round at once: events may have been lost meanwhile.

The watcher starts before the first full pass, so nothing made during start-up is missed. One
worker (this thread) runs passes, so two passes never race on the same path. SIGTERM/SIGINT end
the loop and leave the mirror and the pinned collectors in place: a restart adopts them.

systemd (sdnotify.py; a no-op without $NOTIFY_SOCKET or with `--once`): READY=1 after the first full
round, WATCHDOG=1 after each pass that completed and each full round (at most one a second), STATUS= after
each full round, STOPPING=1 when the loop ends. A loop stuck inside a pass feeds nothing: WatchdogSec=
(at least 3 x --resync-interval, docs/deploy.md) restarts it.

Errors (the retry boundary, like controller-runtime's per-key rate limiter): the worker's queue
is keyed -- one key per tree, plus the round's own steps `refresh` and `watches` -- and every
step runs inside one boundary. A step that raises, or a pass whose operations failed, is logged
once as `step_failed` with its `reconcile_id`, its scopes go back on the queue (level-triggered:
the retry re-reads them) and that key alone waits 0.1 s, doubling per consecutive failure up to
MAX_BACKOFF; other trees keep passing, and one success resets the key. Writing the status
document is a step too (backed off, never fatal), done after each full round and otherwise at
most once per TELEMETRY_EVERY (a burst costs passes, not status writes). `run --once` runs one round and raises
SyncError when any step failed (the command exits 2, as for any environment or operation
failure; 1 stays "drift found" for `verify`).
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field, replace
from types import FrameType
from typing import Any, Generic, TypeVar

import structlog

from bpffs_sync import log, rundir, sdnotify
from bpffs_sync.errors import Remounted, SyncError
from bpffs_sync.histogram import Log2Us
from bpffs_sync.interrupt import Interrupted, Preempted
from bpffs_sync.loader import LoadedStat
from bpffs_sync.mirror.apply import Budget
from bpffs_sync.mirror.forest import Selection, Tree
from bpffs_sync.mirror.mirrors import Mirrors, TreeHint
from bpffs_sync.mirror.reconciler import PassResult
from bpffs_sync.mirror.watch import MountWatcher
from bpffs_sync.paths import Layout, RelPath
from bpffs_sync.programs import StatProgram, lookup

_log = log.get(__name__)
BASE_BACKOFF = 0.1  # seconds before the first retry of a failed step; doubles per failure
MAX_BACKOFF = 30.0  # seconds between retries of a step that keeps failing
MOUNTS = "\0refresh"  # the key of "the mount table changed": re-discover the v1 hierarchies
WATCHES = "\0watches"  # the key of "resync every tree's watch set"
PRIVATE = "\0private"  # the key of "each loaded stat's map and collector are pinned" (e.g. on a new bpffs)
TELEMETRY = "\0telemetry"  # the key of writing the status document
SUPERVISE = "\0watchers"  # the key of "replace the watchers whose reader died"
SUPERVISE_EVERY = 0.5  # seconds between checks that every watcher's reader is alive
PREEMPT_AFTER = 0.01  # seconds a budgeted pass runs before a hint of another subtree may preempt it
PREEMPT_EVERY = 0.002  # seconds between two looks at the queue for such a hint
TELEMETRY_EVERY = 1.0  # seconds: the status document is rewritten at most this often (and after a full round)
WATCHDOG_MIN = 3  # WatchdogSec= below this many resync intervals is logged (watchdog_too_short) at start

T = TypeVar("T", bound=Hashable)

# --- the hint queue ------------------------------------------------------------------------------


class HintQueue(Generic[T]):
    """De-duplicating queue of hints (scopes); a full-resync request absorbs everything pending.
    When hints are arriving back to back (the last two less than BATCH_WAIT apart, the last one
    less than BATCH_WAIT ago), take waits BATCH_WAIT once more for the rest of the burst: one pass
    for a batch costs less than one each. An isolated hint is taken at once."""

    BATCH_WAIT = 0.001

    def __init__(self, group: Callable[[T], Hashable] | None = None) -> None:
        """group: what subtree a hint is of (pending_other tells whether another one has a hint)."""
        self._cond = threading.Condition()
        self._scopes: dict[T, float] = {}  # scope -> when it was first hinted (monotonic)
        self._full = False
        self._last_put = -math.inf
        self._gap = math.inf  # between the last two hints
        self._group = group
        self._groups: set[Hashable] = set()  # of the pending hints
        self.taken_at: list[float] = []  # the hint times of the last take (the lag telemetry's start)

    def put(self, scope: T | None) -> None:
        with self._cond:
            if scope is None:
                self._full = True
                self._scopes.clear()
            elif not self._full:
                now = time.monotonic()
                self._gap, self._last_put = now - self._last_put, now
                if self._scopes.setdefault(scope, self._last_put) == self._last_put and self._group is not None:
                    self._groups.add(self._group(scope))
            self._cond.notify()

    def pending_other(self, group: Hashable) -> bool:
        """Is a hint (or a full resync) waiting that is not of group?"""
        with self._cond:
            return self._full or bool(self._groups - {group})

    def take(self, timeout: float) -> tuple[bool, list[T]]:
        """Wait up to timeout; returns (full, scopes) and empties the queue."""
        with self._cond:
            if not self._full and not self._scopes:
                self._cond.wait(timeout)
            if (self._scopes and not self._full and self._gap < self.BATCH_WAIT
                    and time.monotonic() - self._last_put < self.BATCH_WAIT):
                self._cond.wait(self.BATCH_WAIT)  # a burst in progress: take the rest of it with it
            full, scopes = self._full, list(self._scopes)
            self.taken_at = list(self._scopes.values())
            self._full = False
            self._scopes.clear()
            self._groups.clear()
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
    failed_steps: int = 0  # steps that failed over the daemon's life
    inotify_overflows: int = 0
    watcher_restarts: int = 0  # watchers replaced after their reader died, over the daemon's life
    last_watcher_restart: str = ""  # why the last one died
    event_lag: Log2Us = field(default_factory=Log2Us)  # hint queued -> its round done
    pass_duration: Log2Us = field(default_factory=Log2Us)
    backing_off: dict[str, int] = field(default_factory=dict)  # key -> consecutive failures now
    resync_interval: float = 0.0  # the exporter's /healthz: the last pass is stale after N of these
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)  # tree -> its last full pass's drift
    files: rundir.RunFiles | None = None  # set once the instance lock is held; not part of the document

    def record(self, res: PassResult, tree: str = "") -> None:
        if res.full and tree:
            before = self.drift.get(tree)  # None: the tree's first full pass builds it, repairs nothing
            self.drift[tree] = _drift(res, None if before is None else before["repaired"])
        self.passes += 1
        self.pass_duration.observe(res.seconds)
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
                   cgroup_root=self.layout.cgroup_root, file_mode=self.layout.file_mode,
                   file_gid=self.layout.file_gid)
        rundir.write_telemetry(self.files, doc)


def _drift(res: PassResult, repaired_before: dict[str, int] | None) -> dict[str, Any]:
    """What a full pass found wrong in the mirror, by reason: `remaining` after it (its op failed, or
    one above it did; mount points, which no op touches) and `repaired`, added to the earlier full
    passes' (drift the events missed, over the daemon's life; None: the tree's first full pass, which
    builds the mirror rather than repairs it). The exporter shows it, so it needs no capability to
    verify (export/health.py)."""
    failed = set(res.applied.failed)
    remaining: dict[str, int] = {"mount_point": len(res.plan.mounts)} if res.plan.mounts else {}
    repaired = dict(repaired_before or {})
    for op in res.plan.drift():
        left = any(op.path[:i] in failed for i in range(len(op.path) + 1))
        if left or repaired_before is not None:
            counts = remaining if left else repaired
            counts[str(op.reason)] = counts.get(str(op.reason), 0) + 1
    return {"at": time.time(), "cgroups": res.walked, "deep": not res.cached, "remaining": remaining,
            "repaired": repaired}


# --- the work, per tree, each with its own back-off -----------------------------------------------


@dataclass(slots=True)
class Backoff:
    """Consecutive failures of one key and when it may run again (monotonic seconds)."""

    failures: int = 0
    not_before: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(MAX_BACKOFF, math.ldexp(BASE_BACKOFF, self.failures - 1))
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0


@dataclass(slots=True)
class Work:
    """Scopes waiting to be reconciled, per key: a tree, or one of the round's own steps (MOUNTS,
    WATCHES). A key that failed keeps its scopes and waits out its own back-off; other keys run."""

    scopes: dict[str, dict[RelPath, None]] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)

    def add(self, key: str, scopes: list[RelPath]) -> None:
        self.scopes.setdefault(key, {}).update(dict.fromkeys(scopes))

    def take(self, key: str, now: float) -> list[RelPath] | None:
        """The scopes of key if it has some and is not backing off (they leave the queue)."""
        if key not in self.scopes or self.backoff.get(key, Backoff()).not_before > now:
            return None
        return list(self.scopes.pop(key))

    def ready(self, now: float) -> list[str]:
        return [k for k in self.scopes if self.backoff.get(k, Backoff()).not_before <= now]

    def failed(self, key: str, scopes: list[RelPath], now: float) -> float:
        """Re-queue the scopes (level-triggered: the retry re-reads them); returns the delay."""
        self.add(key, scopes)
        return self.backoff.setdefault(key, Backoff()).failed(now)

    def succeeded(self, key: str) -> None:
        self.backoff.pop(key, None)

    def forget(self, key: str) -> None:
        self.scopes.pop(key, None)
        self.backoff.pop(key, None)

    def next_due(self) -> float:
        """When the earliest waiting key may run (inf: nothing waits)."""
        return min((self.backoff.get(k, Backoff()).not_before for k in self.scopes), default=math.inf)


# --- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    resync_interval: float = 30.0
    watch: bool = True
    once: bool = False
    force_raw_tp: bool = False


def _jittered(interval: float) -> float:
    return interval * random.uniform(0.9, 1.1)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class Daemon:
    """The worker. Every step of a round -- re-discovering the trees (refresh), resyncing the
    watches, one pass per tree, writing telemetry -- runs inside one error boundary: a failure is
    logged with its reconcile_id, the step's scopes are re-queued and retried after that key's own
    exponential back-off (0.1 s doubling to MAX_BACKOFF), and the other keys carry on."""

    def __init__(self, layout: Layout, specs: list[StatProgram], opts: RunOptions,
                 selection: Selection | None = None) -> None:
        self.layout = layout
        self.specs = specs
        self.opts = opts
        self.selection = selection
        self.queue: HintQueue[TreeHint] = HintQueue(_subtree)
        self._preempted: dict[tuple[str, str], int] = {}  # subtree -> its passes preempted in a row
        self.stop_event = threading.Event()
        self.telemetry = Telemetry(layout, [s.name for s in specs], resync_interval=opts.resync_interval)
        self.work = Work()
        self.failed_steps = 0  # every step that failed, over the daemon's life
        self._last_write = -math.inf  # when the status document was last written (monotonic)
        self.stats: dict[str, LoadedStat] = {}
        self.mounts: MountWatcher | None = None
        self.deep_requested = False  # SIGHUP: the next full round re-walks every mirror (set by a handler)
        self.interrupted = 0  # passes ended by a stop request, over the daemon's life
        self.preempted = 0  # passes that made way for another subtree's hint, over the daemon's life
        self.notify = sdnotify.Notifier(env={} if opts.once else None)  # systemd's READY/WATCHDOG/STOPPING

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stop_event.set()
        self.queue.put(None)  # wake the worker

    def request_deep(self) -> None:
        """A full round at once, with every mirror re-walked (not trusted from the cache). Only an
        assignment and the queue's put: safe in a signal handler."""
        self.deep_requested = True
        self.queue.put(None)

    def _budget(self) -> Budget | None:
        """Passes are bounded per top-level subtree once the mirror was built (the first full round
        builds it whole, and `run --once` does all of its one round)."""
        return None if self.opts.once or not self.telemetry.full_passes else Budget()

    def _load(self, name: str) -> LoadedStat:
        """A stat program, loaded (or adopted) the first time a tree needs it; shared by all trees."""
        loaded = self.stats.get(name)
        if loaded is None:
            loaded = LoadedStat(self.layout, lookup(name), force_raw_tp=self.opts.force_raw_tp)
            self.stats[name] = loaded
            if loaded.collector is not None:
                self.telemetry.collectors[name] = loaded.collector_name
        return loaded

    def run(self) -> int:
        """Load, watch, loop until stopped. The caller holds the instance lock. With `once`, a
        step that failed raises SyncError (the command exits 2)."""
        watching = self.opts.watch and not self.opts.once
        base = Tree(self.layout, tuple(s.name for s in self.specs))
        mirrors = Mirrors(base, self.selection, self._load, self.queue.put, watching, loaded=self.stats,
                          on_death=self._watcher_died)
        self.mounts = self._mount_watcher() if watching and self.selection else None
        try:
            for spec in self.specs:
                self._load(spec.name)
            if self.mounts is not None:
                self.mounts.start()
            self._loop(mirrors)
        finally:
            self.notify.stopping()
            self.notify.close()
            if self.mounts is not None:
                self.mounts.stop()
            mirrors.close()
            for loaded in self.stats.values():
                loaded.close()
        if self.opts.once and self.failed_steps:
            raise SyncError("run --once", self.layout.bpffs, 0,
                            f"{self.failed_steps} step(s) of the pass failed (last: {self.telemetry.last_error})")
        return 0

    # --- supervision of the watchers

    def _mount_watcher(self) -> MountWatcher:
        return MountWatcher(lambda: self.queue.put((MOUNTS, ())), on_death=self._watcher_died)

    def _watcher_died(self, reason: str) -> None:
        """Called from the dying reader's thread: wake the worker, which checks and restarts."""
        self.queue.put(None)

    def _check_watchers(self, mirrors: Mirrors) -> None:
        """Queue the `watchers` step when a reader is dead (once: a failed restart waits out its back-off)."""
        if mirrors.dead_watchers() or (self.mounts is not None and self.mounts.failure is not None):
            self.work.add(SUPERVISE, [()])

    def _supervise(self, mirrors: Mirrors) -> bool:
        """Run the `watchers` step if it is due; True when a watcher was replaced (a full round is due)."""
        scopes = self.work.take(SUPERVISE, time.monotonic())
        if scopes is None:
            return False
        before = self.telemetry.watcher_restarts
        self._step(SUPERVISE, scopes, mirrors)
        return self.telemetry.watcher_restarts > before

    def _restart_watchers(self, mirrors: Mirrors) -> None:
        for key, reason in mirrors.dead_watchers().items():
            act = mirrors.active[key]
            error = act.watcher.error if act.watcher is not None else None
            mirrors.restart_watcher(key)
            self._restarted("cgroup", reason, error, tree=key)
        old = self.mounts
        if old is not None and (why := old.failure) is not None:
            self.mounts = self._mount_watcher()
            self.mounts.start()
            old.stop()
            self._restarted("mounts", why, old.error)

    def _restarted(self, watcher: str, reason: str, error: BaseException | None, **kw: Any) -> None:
        self.telemetry.watcher_restarts += 1
        self.telemetry.last_watcher_restart = f"{watcher}: {reason}"
        _log.warning("watcher_restarted", watcher=watcher, reason=reason, restarts=self.telemetry.watcher_restarts,
                     exc_info=error if error is not None and not isinstance(error, OSError) else False, **kw)

    # --- the error boundary

    def _failed(self, key: str, scopes: list[RelPath], error: str, errno: int, rid: str, **kw: Any) -> None:
        delay = self.work.failed(key, scopes, time.monotonic())
        self.failed_steps += 1
        self.telemetry.last_error = error
        _log.warning("step_failed", step=_step_name(key), tree=key if _is_tree(key) else None, error=error,
                     errno=errno, retry_in=round(delay, 3), failures=self.work.backoff[key].failures,
                     reconcile_id=rid, **kw)

    def _step(self, key: str, scopes: list[RelPath], mirrors: Mirrors) -> None:
        """Run one key's scopes inside the boundary."""
        rid = _new_id()
        with structlog.contextvars.bound_contextvars(reconcile_id=rid):
            try:
                if key == MOUNTS:
                    for added in mirrors.refresh():
                        self.work.add(added, [()])
                    for gone in [k for k in self.work.scopes if _is_tree(k) and k not in mirrors.active]:
                        self.work.forget(gone)
                elif key == WATCHES:
                    mirrors.resync_watches()
                elif key == SUPERVISE:
                    self._restart_watchers(mirrors)
                elif key == PRIVATE:
                    for loaded in self.stats.values():
                        loaded.heal()
                else:
                    parts = _by_subtree(scopes) if self._budget() is not None else [scopes]
                    for i, part in enumerate(parts):
                        if i:  # each pass its own id
                            structlog.contextvars.bind_contextvars(reconcile_id=_new_id())
                        if not self._pass(key, part, mirrors):
                            self.work.add(key, [s for rest in parts[i + 1:] for s in rest])
                            return
            except Remounted:  # not a failure to retry: this process's lock is of another instance
                raise
            except Preempted:  # a hint of another subtree waits: it goes first, this pass comes again
                self.work.add(key, scopes)
                self.preempted += 1
                return
            except Interrupted:  # stopping: the pass ended between two steps; nothing failed
                self.work.add(key, scopes)
                self.interrupted += 1
                _log.info("pass_interrupted", step=_step_name(key), tree=key if _is_tree(key) else None,
                          scopes=len(scopes))
                return
            except Exception as err:  # the boundary: log, back off, retry; never die
                self._failed(key, scopes, str(err), getattr(err, "errno", 0) or 0, rid,
                             exc_info=not isinstance(err, SyncError))
                return
        self.work.succeeded(key)

    def _preempter(self, key: str, scopes: list[RelPath]) -> Callable[[], bool] | None:
        """For a budgeted pass of one top-level subtree: true once it ran PREEMPT_AFTER and a hint
        of another subtree is waiting (checked every PREEMPT_EVERY at most). Each consecutive
        preemption of a subtree doubles how long its next pass runs before it may be preempted,
        so it still completes a pass now and then (and progresses), while the others' hints
        mostly wait PREEMPT_AFTER at most; a pass that completes resets it."""
        subtrees = {_subtree((key, s)) for s in scopes}
        if self._budget() is None or len(subtrees) != 1 or not scopes or () in scopes:
            return None
        (me,) = subtrees
        times = self._preempted.pop(me, 0)  # consecutive preemptions so far (back only if preempted again)
        look = time.monotonic() + PREEMPT_AFTER * 2 ** min(times, 10)

        def preempt() -> bool:
            nonlocal look
            now = time.monotonic()
            if now < look:
                return False
            look = now + PREEMPT_EVERY
            if self.queue.pending_other(me):
                self._preempted[me] = times + 1
                return True
            return False
        return preempt

    def _pass(self, key: str, scopes: list[RelPath], mirrors: Mirrors) -> bool:
        """One pass of a tree; False when an op failed (logged, its scopes re-queued, backing off)."""
        res = mirrors.reconcile(key, scopes, budget=self._budget(), stop=self.stop_event,
                                preempt=self._preempter(key, scopes))
        if res is None:
            return True
        self.notify.watchdog()  # the pass completed (a preempted or interrupted one raised)
        self.telemetry.record(res, key)
        if res.deferred:  # past the pass's share or budget of one subtree: the next pass
            self.work.add(key, res.deferred)
        if res.applied.errors:  # level-triggered: the retry re-reads the failed ops' cgroups
            self._failed(key, res.retry_scopes or res.scopes, res.applied.errors[-1], 0, res.reconcile_id,
                         ops_failed=len(res.applied.errors))
            return False
        return True

    def _run_ready(self, mirrors: Mirrors) -> None:
        """Every key whose back-off is over: the round's own steps first, then the trees. A stop
        request ends the round between two steps (a pass itself ends between two operations)."""
        for key in (MOUNTS, PRIVATE, WATCHES):
            scopes = self.work.take(key, time.monotonic())
            if scopes is not None and not self.stop_event.is_set():
                self._step(key, scopes, mirrors)
        for key in self.work.ready(time.monotonic()):
            if self.stop_event.is_set():
                return
            if _is_tree(key) and (scopes := self.work.take(key, time.monotonic())) is not None:
                self._step(key, scopes, mirrors)

    def _write_telemetry(self, mirrors: Mirrors) -> None:
        backoff = self.work.backoff.get(TELEMETRY)
        if backoff is not None and backoff.not_before > time.monotonic():
            return
        rid = _new_id()
        with structlog.contextvars.bound_contextvars(reconcile_id=rid):
            try:
                self.telemetry.watches = mirrors.watch_count
                self.telemetry.inotify_overflows = mirrors.overflows
                self.telemetry.trees = mirrors.describe()
                self.telemetry.failed_steps = self.failed_steps
                self.telemetry.backing_off = {_step_name(k) if not _is_tree(k) else k: b.failures
                                              for k, b in self.work.backoff.items()}
                self.telemetry.write()
            except Exception as err:  # the boundary
                self._failed(TELEMETRY, [], str(err), getattr(err, "errno", 0) or 0, rid,
                             exc_info=not isinstance(err, (SyncError, OSError)))
                self.work.scopes.pop(TELEMETRY, None)  # no scopes: retried by the next round
                return
        self.work.succeeded(TELEMETRY)

    # --- rounds

    def _full_round(self, mirrors: Mirrors) -> None:
        started = time.monotonic()
        self.work.add(MOUNTS, [()])
        self.work.add(PRIVATE, [()])
        self.work.add(WATCHES, [()])
        for key in mirrors.active:
            self.work.add(key, [()])
        self._run_ready(mirrors)
        self.telemetry.full_passes += 1
        self.telemetry.last_full_at = time.time()
        self.telemetry.last_full_seconds = time.monotonic() - started

    def _loop(self, mirrors: Mirrors) -> None:
        next_full = 0.0  # the first round is a full one
        write_at = math.inf  # when the status document is due (inf: it is up to date)
        next_check = 0.0  # when the watchers' readers are next checked
        while not self.stop_event.is_set():
            wait = min(next_full, self.work.next_due(), write_at, next_check) - time.monotonic()
            full, hints = self.queue.take(max(0.0, wait))
            if self.stop_event.is_set():
                break
            for key, scope in hints:  # taken together: one pass per tree, however large the burst
                self.work.add(key, [scope])
            if full or time.monotonic() >= next_check:  # a dying reader asks for a full round
                self._check_watchers(mirrors)
                next_check = time.monotonic() + SUPERVISE_EVERY
            if self._supervise(mirrors):  # replaced: what happened while it was dead is unknown
                full = True
            if full or time.monotonic() >= next_full:
                if self.deep_requested:  # SIGHUP: this round trusts no cache
                    self.deep_requested = False
                    mirrors.request_deep()
                self._full_round(mirrors)
                self._notify_round()
                next_full = time.monotonic() + _jittered(self.opts.resync_interval)
                write_at = 0.0  # a full round is written at once
            elif hints or self.work.scopes:
                self._run_ready(mirrors)
                done = time.monotonic()
                for queued in self.queue.taken_at:
                    self.telemetry.event_lag.observe(done - queued)
            write_at = min(write_at, self._last_write + TELEMETRY_EVERY)
            if time.monotonic() >= write_at or self.opts.once:
                self._write_telemetry(mirrors)
                self._last_write, write_at = time.monotonic(), math.inf
            if self.opts.once:
                break
        _log.info("stopping", passes=self.telemetry.passes, interrupted=self.interrupted, preempted=self.preempted)

    def _notify_round(self) -> None:
        """After a full round: READY=1 the first time, a watchdog feed, the status line."""
        t = self.telemetry
        status = (f"{t.full_passes} full rounds, {t.passes} passes, {self.failed_steps} failed steps; "
                  f"last round {t.last_full_seconds:.1f} s")
        if t.full_passes == 1:
            self.notify.ready(status)
            watchdog = self.notify.watchdog_usec / 1e6
            if watchdog and watchdog < WATCHDOG_MIN * self.opts.resync_interval:
                _log.warning("watchdog_too_short", watchdog_sec=watchdog, resync_interval=self.opts.resync_interval,
                             want_at_least=WATCHDOG_MIN * self.opts.resync_interval)
        else:
            self.notify.status(status)
        self.notify.watchdog()


def _subtree(hint: TreeHint) -> tuple[str, str]:
    """(tree, top-level cgroup) of a hint: the unit of a pass's budget and of preemption."""
    key, scope = hint
    return key, scope[0] if scope else ""


def _by_subtree(scopes: list[RelPath]) -> list[list[RelPath]]:
    """A tree's hinted scopes as one pass per top-level subtree, the fewest scopes first: a
    cgroup made beside a user's busy subtree is mirrored by its own short pass before the busy
    subtree's (bounded) one, instead of waiting for that pass's walks. A full pass stays one."""
    if () in scopes:
        return [scopes]
    groups: dict[str, list[RelPath]] = {}
    for scope in scopes:
        groups.setdefault(scope[0], []).append(scope)
    return sorted(groups.values(), key=len)


def _is_tree(key: str) -> bool:
    return not key.startswith("\0")


def _step_name(key: str) -> str:
    return key.strip("\0") if not _is_tree(key) else "pass"


def run(layout: Layout, specs: list[StatProgram], opts: RunOptions, selection: Selection | None = None) -> int:
    daemon = Daemon(layout, specs, opts, selection)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    # SIGHUP: a full resync at once (not the default death mid-pass). The handler only queues, as
    # request_stop does; the log line comes from a thread (a handler must not take the log's lock).
    hup = threading.Event()

    def log_hups() -> None:
        while hup.wait():
            hup.clear()
            _log.info("resync_requested", signal="SIGHUP")

    def on_hup(signum: int, frame: FrameType | None) -> None:
        daemon.request_deep()  # a full round that re-walks every mirror (no cache trusted)
        hup.set()

    threading.Thread(target=log_hups, name="sighup-log", daemon=True).start()
    signal.signal(signal.SIGHUP, on_hup)
    with rundir.exclusive(layout.bpffs, rundir.ROLE_RUN) as files:
        # Every pass checks that the bpffs at the path is still the instance locked here (Remounted).
        daemon.layout = replace(layout, bpffs_dev=os.stat(layout.bpffs).st_dev)
        daemon.telemetry.files = files
        _log.info("starting", bpffs=layout.bpffs, cgroup_root=layout.cgroup_root,
                  programs=[s.name for s in specs], resync_interval=opts.resync_interval, watch=opts.watch,
                  v1=selection.selectors if selection else [])
        return daemon.run()
