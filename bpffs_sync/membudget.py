"""The daemon's memory budget: its own memory cgroup's limit, and whether usage is near it.

What a mirrored cgroup costs (measured: `bpffs-sync run` in a v1 memory cgroup, 5 000 and 20 000 v2
cgroups, one stat; usage as the memory controller charges it, kernel memory included):
    base      ~42 MiB after start-up (~56 MiB peak while libbpf loads the programs against BTF)
    per cgroup ~3.2 KiB: ~1.75 KiB kernel (the pinned iterator link, its bpffs inode and dentry, the
               map entry, the inotify mark) + ~1.1 KiB Python (walk trees, the pin memo, the watch set)
    20 000 cgroups: 105 MiB (kernel 57 MiB, RSS 64 MiB)
So a limit of 64 MiB + 3.5 KiB per mirrored cgroup (v2 and every v1 tree counted) is enough; the
DaemonSet's 256 Mi covers ~55 000 cgroups.

The limit is the daemon's memory cgroup's (v1 memory.limit_in_bytes, v2 memory.max), or the smaller
`run --memory-budget SIZE` (configure()); usage is the cgroup's (kernel memory included), or the
process's RSS when no memory cgroup is found.

Under pressure -- usage above HIGH of the limit -- caches that only save work shrink instead of the
kernel killing the daemon mid-pass: the pin memo (bpffs.PinJudge, ~450 B a pin) is dropped and not
kept until usage is below LOW again (each pin is then judged by BPF_OBJ_GET + link info, slower, the
same answer), and the directory fd caches keep 2 fds (dirfd.cache_limit). `pressure()` is the one
question other caches may ask too. One `memory_pressure` line is logged each time the state
changes. The kernel side (a pin per cgroup) cannot shrink: it is the mirror.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from bpffs_sync import log, mountinfo

_log = log.get(__name__)

BASE_BYTES = 64 << 20  # start-up peak with headroom
PER_CGROUP_BYTES = 3584  # 3.5 KiB: measured 3.2 KiB, with headroom
HIGH, LOW = 0.80, 0.60  # fractions of the limit: shrink above HIGH, grow again below LOW
CHECK_EVERY = 1.0  # seconds: usage is read at most this often


@dataclass(frozen=True, slots=True)
class Files:
    """The memory cgroup files of one process: its usage and its limit."""

    usage: str
    limit: str


def needed(cgroups: int) -> int:
    """Bytes the daemon needs to mirror `cgroups` cgroups comfortably."""
    return BASE_BYTES + PER_CGROUP_BYTES * cgroups


def files(proc_cgroup: str = "/proc/self/cgroup", mounts: list[mountinfo.MountEntry] | None = None) -> Files | None:
    """Where this process's memory usage and limit are read: the v1 memory hierarchy's
    memory.usage_in_bytes / memory.limit_in_bytes when the memory controller is on v1, else v2's
    memory.current / memory.max. None when neither is mounted here (no budget known)."""
    try:
        with open(proc_cgroup, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    entries = mountinfo.read() if mounts is None else mounts
    v1 = v2 = None
    for line in lines:
        _hid, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(","):
            v1 = path
        elif ctrls == "":
            v2 = path
    for m in entries:
        if v1 is not None and m.fstype == "cgroup" and "memory" in m.super_options:
            base = os.path.join(m.mount_point, os.path.relpath(v1, m.root))
            return Files(os.path.join(base, "memory.usage_in_bytes"), os.path.join(base, "memory.limit_in_bytes"))
    for m in entries:
        if v2 is not None and m.fstype == "cgroup2":
            base = os.path.normpath(os.path.join(m.mount_point, os.path.relpath(v2, m.root)))
            if os.path.exists(os.path.join(base, "memory.max")):
                return Files(os.path.join(base, "memory.current"), os.path.join(base, "memory.max"))
    return None


def _read_int(path: str) -> int | None:
    """A memory cgroup number; None for `max` (v2: no limit) or when unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


NO_LIMIT = 1 << 60  # v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages)


def _rss() -> int | None:
    """This process's resident set, bytes (/proc/self/statm)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Budget:
    """The pressure state of one process's memory, read at most every CHECK_EVERY seconds.
    where: its memory cgroup's files (None: none found); limit: a budget of its own (0: none)."""

    def __init__(self, where: Files | None, limit: int = 0) -> None:
        self.where = where
        self.limit = limit
        self.tight = False
        self._read_at = -1e9

    def _read(self) -> tuple[int | None, int | None]:
        """(usage, limit), either None when unknown; limit None also when there is none."""
        if self.where is None:
            return _rss(), self.limit or None
        usage, limit = _read_int(self.where.usage), _read_int(self.where.limit)
        if limit is None or limit >= NO_LIMIT:  # `max`, or v1's "unlimited"
            limit = None
        if self.limit:
            limit = self.limit if limit is None else min(limit, self.limit)
        return usage, limit

    def pressure(self) -> bool:
        """True while usage is above HIGH of the limit (and until it is below LOW again)."""
        now = time.monotonic()
        if (self.where is None and not self.limit) or now - self._read_at < CHECK_EVERY:
            return self.tight
        self._read_at = now
        usage, limit = self._read()
        if usage is None:
            return self.tight
        was = self.tight
        self.tight = limit is not None and usage > (LOW if was else HIGH) * limit
        if self.tight != was:
            _log.warning("memory_pressure", tight=self.tight, usage=usage, limit=limit,
                         detail=("near the memory limit: caches that only save work are dropped (slower "
                                 "passes, same mirror)" if self.tight else "below the memory limit again: "
                                 "caches are kept"))
        return self.tight


_budget: Budget | None = None


def configure(limit: int) -> None:
    """A budget of the process's own (`run --memory-budget`), besides its memory cgroup's limit."""
    global _budget  # noqa: PLW0603 - one per process
    _budget = Budget(files(), limit)


def pressure() -> bool:
    """Is this process near its memory cgroup's limit? (One Budget per process, made on first use.)"""
    global _budget  # noqa: PLW0603 - one per process, found on first use
    if _budget is None:
        _budget = Budget(files())
    return _budget.pressure()
