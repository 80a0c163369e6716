"""The mirror daemon as the exporter sees it: what it publishes in its run directory (rundir.published).

No capability and no shared PID namespace needed: whether a daemon runs is its lock, tested with
F_OFD_GETLK (not /proc/locks, which hides a holder in another PID namespace); what it says about
itself is its telemetry document, taken only when it names the pid and start time the holder wrote
into the lock file.

Healthy (/healthz, `export --check`): a `bpffs-sync run` holds the lock, and its last pass (before
its first: its start) is at most `stale_after` x its resync interval old. The daemon rewrites the
document after every full round, so a daemon stuck in a pass, or whose passes all fail, goes stale.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from bpffs_sync import rundir
from bpffs_sync.errors import SyncError
from bpffs_sync.paths import MIRROR_V2

STALE_AFTER = 3.0  # resync intervals without a pass before /healthz fails
DEFAULT_INTERVAL = 30.0  # seconds: the daemon's default --resync-interval, for a daemon that has not said its own


@dataclass(frozen=True, slots=True)
class DaemonState:
    up: bool  # a `bpffs-sync run` holds the lock
    telemetry: dict[str, Any] = field(default_factory=dict)  # its document ({} until its first one)
    since: float = 0.0  # when it took the lock (the lock file's mtime)
    refused: str = ""  # a run directory we do not trust (then up is False)


def instance(bpffs: str) -> str:
    """The path whose filesystem names the daemon's lock: the v2 tree's root `<bpffs>/cgroup` when it is a
    directory (the same bpffs, however it is reached), else `<bpffs>`. So an exporter that sees only the
    tree, bind-mounted where it can reach it (systemd mounts /sys/fs/bpf mode 0700: only root may enter),
    finds the daemon of that tree's bpffs."""
    tree = os.path.join(bpffs, MIRROR_V2)
    try:
        return tree if stat.S_ISDIR(os.lstat(tree).st_mode) else bpffs
    except OSError:
        return bpffs


def read(bpffs: str, directory: str | None = None) -> DaemonState:
    try:
        pub = rundir.published(instance(bpffs), directory)
    except SyncError as err:
        return DaemonState(False, refused=str(err))
    if pub is None or not pub.held or pub.role != rundir.ROLE_RUN:
        return DaemonState(False)
    return DaemonState(True, pub.telemetry or {}, pub.since)


def _number(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def judge(state: DaemonState, now: float, stale_after: float = STALE_AFTER) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    if state.refused:
        return False, f"run directory refused: {state.refused}"
    if not state.up:
        return False, "no bpffs-sync run holds this bpffs"
    doc = state.telemetry
    interval = _number(doc, "resync_interval") or DEFAULT_INTERVAL
    last = _number(doc, "last_pass_at")
    what = "last pass"
    if not last:
        last, what = _number(doc, "started_at") or state.since, "started, no pass yet,"
    age = now - last
    if age > stale_after * interval:
        return False, f"stale: {what} {age:.0f} s ago, more than {stale_after:g} x the {interval:g} s resync interval"
    return True, "ok"
