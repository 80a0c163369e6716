"""Mirror health as Prometheus families (prometheus_client): the daemon, its drift, kernel links.

- daemon: `up` when a `bpffs-sync run` holds the bpffs's lock, seen from any PID namespace
  (published.py: an F_OFD_GETLK test, not /proc/locks, not a pid in a file); counters and gauges
  from the telemetry that very daemon rewrites after each round. Keys it does not write are absent.
  `healthy` is /healthz's verdict (its last pass at most --stale-after resync intervals old).
- drift: what the daemon's last full pass of each tree found, by reason, remaining and repaired
  (the daemon publishes it: the exporter needs no capability). Only when the daemon publishes none
  (none runs, or an older one) and the exporter may ask the kernel (root, --verify-interval > 0):
  the same check as `bpffs-sync verify`, which walks both trees and asks the kernel about every pin,
  so it runs in its own thread every `verify_interval` seconds; a scrape only reads its last result.
- kernel links (patched kernel only): one series per cgroup stat link, files and errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bpffs_sync import log
from bpffs_sync.errors import SyncError
from bpffs_sync.export import published
from bpffs_sync.mirror.diff import Reason
from bpffs_sync.paths import MIRROR_V2, Layout
from bpffs_sync.programs import DEFAULT_PROGRAMS, lookup

_log = log.get(__name__)

# telemetry key -> (metric, kind, help); kind "counter" metrics get `_total` from prometheus_client.
TELEMETRY: dict[str, tuple[str, str, str]] = {
    "passes": ("bpffs_sync_reconcile_passes", "counter", "Reconcile passes run by the daemon."),
    "full_passes": ("bpffs_sync_full_passes", "counter", "Full reconcile rounds (start-up, overflow, resync)."),
    "ops_applied": ("bpffs_sync_ops_applied", "counter", "mkdir/pin/unpin operations applied."),
    "op_errors": ("bpffs_sync_op_errors", "counter", "Operations that failed."),
    "inotify_overflows": ("bpffs_sync_inotify_overflows", "counter", "inotify queue overflows seen."),
    "watches": ("bpffs_sync_watches", "gauge", "inotify watches held on cgroupfs."),
    "watcher_restarts": ("bpffs_sync_watcher_restarts", "counter",
                         "Watchers (inotify, mount table) replaced after their reader died."),
    "last_full_seconds": ("bpffs_sync_last_full_pass_duration_seconds", "gauge",
                          "Duration of the last full reconcile round."),
    "last_pass_at": ("bpffs_sync_last_pass_timestamp_seconds", "gauge", "When the last pass ended."),
    "last_full_at": ("bpffs_sync_last_full_pass_timestamp_seconds", "gauge", "When the last full round ended."),
    "started_at": ("bpffs_sync_daemon_start_time_seconds", "gauge", "When the daemon started."),
}


# telemetry key (a histogram.Log2Us as a dict) -> (metric, help)
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "event_lag": ("bpffs_sync_event_to_mirror_seconds",
                  "From an inotify hint queued to the end of the round that mirrored it."),
    "pass_duration": ("bpffs_sync_reconcile_pass_duration_seconds", "Duration of each reconcile pass."),
}


def _log2_histogram(name: str, help_text: str, hist: dict[str, Any]) -> Metric:
    """A Log2Us (slot i: [2^i, 2^(i+1)) us) as a Prometheus histogram: bucket le = 2^(i+1) us."""
    buckets, total = [], 0
    for i, n in enumerate(hist["slots"]):
        total += int(n)
        buckets.append((repr((2 ** (i + 1)) / 1e6), total))
    buckets.append(("+Inf", int(hist.get("count", total))))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=float(hist.get("sum_seconds", 0.0)))


def daemon_state(bpffs: str) -> tuple[bool, dict[str, Any]]:
    """(a `bpffs-sync run` holds this bpffs's lock, the telemetry that very process wrote or {})."""
    state = published.read(bpffs)
    if state.refused:  # a run directory that is not trusted: shown as down, said once per scrape
        _log.warning("export_run_dir_refused", error=state.refused)
    return state.up, state.telemetry


# --- verify, on its own clock ----------------------------------------------------------------------


@dataclass(slots=True)
class VerifyResult:
    at: float = 0.0
    seconds: float = 0.0
    drift: dict[str, dict[str, int]] = field(default_factory=dict)  # tree -> reason -> entries
    collector_problems: dict[str, int] = field(default_factory=dict)
    cgroups: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    failures: int = 0


def trees_to_verify(bpffs: str, cgroup_root: str | None) -> list[tuple[Layout, list[str]]]:
    """The daemon's trees (from its telemetry), else the v2 tree with the default stats."""
    _, doc = daemon_state(bpffs)
    out: list[tuple[Layout, list[str]]] = []
    for key, tree in sorted((doc.get("trees") or {}).items()):
        out.append((Layout(bpffs, str(tree["cgroup_root"]), key, int(tree.get("hierarchy_id", 0))),
                    [str(s) for s in tree.get("stats", [])]))
    if not out and cgroup_root:
        out.append((Layout(bpffs, cgroup_root, MIRROR_V2), list(DEFAULT_PROGRAMS)))
    return out


class Verifier:
    """Runs verify every `interval` seconds in a daemon thread; `result` is the last outcome."""

    def __init__(self, bpffs: str, cgroup_root: str | None, interval: float) -> None:
        self.bpffs = bpffs
        self.cgroup_root = cgroup_root
        self.interval = interval
        self.result = VerifyResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="verify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> VerifyResult:
        with self._lock:
            return self.result

    def run_once(self) -> None:
        from bpffs_sync.backends.user_space import verify

        if isinstance(daemon_state(self.bpffs)[1].get("drift"), dict):
            return  # the daemon publishes its own drift (Health shows that): no need to ask the kernel
        started = time.monotonic()
        drift: dict[str, dict[str, int]] = {}
        problems: dict[str, int] = {}
        cgroups: dict[str, int] = {}
        failed = False
        for layout, stats in trees_to_verify(self.bpffs, self.cgroup_root):
            try:
                report = verify(layout, [lookup(s) for s in stats])
            except SyncError as err:
                failed = True
                _log.warning("export_verify_failed", tree=layout.mirror, error=str(err))
                continue
            counts = {str(r): 0 for r in Reason}
            for op in report.plan.drift():
                counts[str(op.reason)] += 1
            counts[str(Reason.MOUNT_POINT)] = len(report.plan.mounts)  # drift no op repairs
            drift[layout.mirror] = counts
            problems[layout.mirror] = len(report.collector_problems)
            cgroups[layout.mirror] = report.cgroups
        prev = self.snapshot()
        new = VerifyResult(time.time(), time.monotonic() - started, drift, problems, cgroups, prev.runs + 1,
                           prev.failures + failed)
        with self._lock:
            self.result = new

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as err:  # keep the thread alive; the failure shows as a metric
                _log.error("export_verify_crashed", error=f"{type(err).__name__}: {err}")
                with self._lock:
                    self.result.failures += 1
            self._stop.wait(self.interval)


def _daemon_drift(drift: dict[str, Any]) -> Iterator[Metric]:
    """The daemon's `drift` document (mirror/daemon.py _drift): tree -> remaining/repaired by reason."""
    labels = ["tree", "reason"]
    remaining = GaugeMetricFamily("bpffs_sync_drift_entries", "Mirror entries out of step with cgroupfs after the "
                                  "daemon's last full pass, by reason (0 everywhere: in sync).", labels=labels)
    repaired = CounterMetricFamily("bpffs_sync_drift_repaired", "Mirror entries the daemon's full passes found "
                                   "out of step and repaired, by reason (what its events missed).", labels=labels)
    cgroups = GaugeMetricFamily("bpffs_sync_cgroups", "cgroups in each mirrored tree at the daemon's last full "
                                "pass.", labels=["tree"])
    at = GaugeMetricFamily("bpffs_sync_drift_timestamp_seconds", "When the daemon's last full pass of the tree "
                           "ended.", labels=["tree"])
    for tree, doc in sorted(drift.items()):
        if not isinstance(doc, dict):
            continue
        for fam, key in ((remaining, "remaining"), (repaired, "repaired")):
            counts = doc.get(key) or {}
            for reason in sorted({str(r) for r in Reason} | set(counts)):
                fam.add_metric([tree, reason], float(counts.get(reason, 0)))
        cgroups.add_metric([tree], float(doc.get("cgroups", 0)))
        at.add_metric([tree], float(doc.get("at", 0)))
    yield from (remaining, repaired, cgroups, at)


# --- the collector ---------------------------------------------------------------------------------


def _kernel_links() -> list[Any]:
    from bpffs_sync import libbpf

    return list(libbpf.cgroup_stat_links())


class Health(Collector):
    """prometheus_client collector: daemon telemetry, the verify thread's result, kernel links."""

    def __init__(self, bpffs: str, verifier: Verifier | None, kernel_links: bool,
                 stale_after: float = published.STALE_AFTER) -> None:
        """kernel_links: the kernel carries the series (kernel_a1.supported(), checked once)."""
        self.bpffs = bpffs
        self.verifier = verifier
        self.kernel_links = kernel_links
        self.stale_after = stale_after

    def collect(self) -> Iterator[Metric]:
        state = published.read(self.bpffs)
        if state.refused:  # a run directory that is not trusted: shown as down, said once per scrape
            _log.warning("export_run_dir_refused", error=state.refused)
        yield from self._daemon(state)
        drift = state.telemetry.get("drift")
        if isinstance(drift, dict):
            yield from _daemon_drift(drift)
        elif self.verifier is not None:
            yield from self._verify(self.verifier.snapshot())
        if self.kernel_links:
            yield from self._links()

    def _daemon(self, state: published.DaemonState) -> Iterator[Metric]:
        up, doc = state.up, state.telemetry
        yield GaugeMetricFamily("bpffs_sync_daemon_up", "1 when a bpffs-sync run holds this bpffs's lock.",
                                value=int(up))
        healthy, _ = published.judge(state, time.time(), self.stale_after)
        yield GaugeMetricFamily("bpffs_sync_daemon_healthy", "1 when the daemon runs and its last pass is at most "
                                "--stale-after resync intervals old (/healthz says ok).", value=int(healthy))
        for key, (name, kind, help_text) in TELEMETRY.items():
            value = doc.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if kind == "counter":
                yield CounterMetricFamily(name, help_text, value=value)
            else:
                yield GaugeMetricFamily(name, help_text, value=value)
        for key, (name, help_text) in HISTOGRAMS.items():
            hist = doc.get(key)
            if isinstance(hist, dict) and isinstance(hist.get("slots"), list):
                yield _log2_histogram(name, help_text, hist)
        trees = doc.get("trees") or {}
        if trees:
            g = GaugeMetricFamily("bpffs_sync_tree_watches", "inotify watches per mirrored tree.", labels=["tree"])
            for key, tree in sorted(trees.items()):
                g.add_metric([key], float(tree.get("watches", 0)))
            yield g

    def _verify(self, res: VerifyResult) -> Iterator[Metric]:
        yield CounterMetricFamily("bpffs_sync_verify_runs", "verify runs by the exporter.", value=res.runs)
        yield CounterMetricFamily("bpffs_sync_verify_failures", "verify runs that could not check a tree.",
                                  value=res.failures)
        if not res.at:
            return
        yield GaugeMetricFamily("bpffs_sync_verify_timestamp_seconds", "When the last verify ended.", value=res.at)
        yield GaugeMetricFamily("bpffs_sync_verify_duration_seconds", "How long the last verify took.",
                                value=res.seconds)
        drift = GaugeMetricFamily("bpffs_sync_drift_entries", "Mirror entries out of step with cgroupfs at the "
                                  "last verify, by reason (0 everywhere: in sync).", labels=["tree", "reason"])
        problems = GaugeMetricFamily("bpffs_sync_collector_problems", "Stats whose collector is missing or "
                                     "detached at the last verify.", labels=["tree"])
        cgroups = GaugeMetricFamily("bpffs_sync_cgroups", "cgroups in each mirrored tree at the last verify.",
                                    labels=["tree"])
        for tree, reasons in sorted(res.drift.items()):
            for reason, n in sorted(reasons.items()):
                drift.add_metric([tree, reason], n)
            problems.add_metric([tree], res.collector_problems.get(tree, 0))
            cgroups.add_metric([tree], res.cgroups.get(tree, 0))
        yield drift
        yield problems
        yield cgroups

    def _links(self) -> Iterator[Metric]:
        try:
            links = _kernel_links()
        except SyncError as err:
            _log.warning("export_kernel_links_failed", error=str(err))
            return
        labels = ["link_id", "stat", "cgroup_id"]
        files = GaugeMetricFamily("bpffs_sync_kernel_link_files", "Files a cgroup stat link keeps.", labels=labels)
        errors = GaugeMetricFamily("bpffs_sync_kernel_link_errors", "Files a cgroup stat link failed to make.",
                                   labels=labels)
        for d in links:
            lab = [str(d.link_id), str(d.name), str(d.cgroup_id)]
            files.add_metric(lab, d.nr_files)
            errors.add_metric(lab, d.nr_errors)
        yield GaugeMetricFamily("bpffs_sync_kernel_links", "cgroup stat links (patched kernel).", value=len(links))
        yield files
        yield errors
