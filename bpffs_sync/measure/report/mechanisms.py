"""The mechanisms compared, each real code reading the same stat of the same cgroup (bed.Bed).

A Mechanism has a Python operation (what a Python user writes: one read, parsed or formatted
into the same numbers) and the C loop's arguments (bench/report/readloop.c). Each operation
returns the number it read, so the runner can show that every mechanism saw the same cgroup.

Reads of on-CPU time (hist_oncpu's figures unless said otherwise):
  mirror_iter    the user-space mirror's pinned cgroup iterator: open + read + parse the file
  prog_run       a pinned BPF_PROG_TYPE_SYSCALL program, BPF_PROG_RUN with the cgroup id in,
                 the raw struct out, formatted in user space (C: raw only)
  map_lookup     the pinned stats map read by cgroup id, formatted in user space (C: raw only)
  iter_per_read  a cgroup iterator made per read (link + iterator fd) from the pinned reader
                 program, without a pinned link
  cpu_stat       cgroupfs v2 cpu.stat, parsed for usage_usec (the kernel's own on-CPU time)
  cpuacct_usage  cgroup-v1 cpuacct.usage (the same figure on a v1 hierarchy)
  memory_stat    cgroup-v1 memory.stat, parsed whole (what Borglet parses, per the RFC)
  netlink        taskstats CGROUPSTATS_CMD_GET (pyroute2): task-state counts of a cgroup-v1
                 cgroup; the nearest netlink has, it carries no CPU time
Knobs (per-cgroup settings, the sched_ext use case):
  xattr_set / xattr_get   a cgroupfs user.* xattr on the cgroup directory (the maintainer's idea)
  map_update              a pinned map update keyed by cgroup id
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_REQUEST, genlmsg  # type: ignore[import-untyped]
from pyroute2.netlink.generic import GenericNetlinkSocket  # type: ignore[import-untyped]

from bpffs_sync.histogram import StatFile, format_stat, parse_stat
from bpffs_sync.loader import cg_key
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report.bed import XATTR, Bed

MAX_SLOTS = 27
_HIST = struct.Struct(f"=QQ{MAX_SLOTS}Q")  # struct hist_value
_ARGS = struct.Struct("=IIQII")  # struct stat_args up to value
CGROUPSTATS_CMD_GET = 4


@dataclass(frozen=True, slots=True)
class Mechanism:
    key: str
    label: str
    kind: str  # "read" or "knob"
    what: str  # the figure it reads, in words
    python: Callable[[], int] | None  # None: no Python loop (the reason is in `missing`)
    cloop: list[str] | None  # readloop MODE ARGS (N goes after MODE)
    missing: str = ""  # why this mechanism cannot run here (then python and cloop are None)


def _format_raw(raw: bytes) -> int:
    total, count, *slots = _HIST.unpack(raw)
    format_stat(StatFile({"cgroup_id": 0, "total_ns": total, "slices": count}, "usecs", list(slots)))
    return int(total)


def _parse_file(path: str, key: str) -> Callable[[], int]:
    def op() -> int:
        with open(path, encoding="utf-8") as f:
            return parse_stat(f.read()).summary.get(key, 0)
    return op


def _kv_file(path: str, key: str, scale: int = 1) -> Callable[[], int]:
    """A cgroupfs `key value` file (cpu.stat, memory.stat), parsed whole like a real reader."""
    def op() -> int:
        with open(path, encoding="utf-8") as f:
            fields = dict(line.split(" ", 1) for line in f.read().splitlines())
        return int(fields[key]) * scale
    return op


def _single_value(path: str) -> Callable[[], int]:
    def op() -> int:
        with open(path, encoding="utf-8") as f:
            return int(f.read())
    return op


def _map_lookup(bed: Bed) -> Callable[[], int]:
    key = cg_key(0, bed.target_id)

    def op() -> int:
        raw = ffi.map_lookup(bed.map_fd, key, _HIST.size, "oncpu_stats")
        return _format_raw(raw) if raw is not None else 0
    return op


def prog_found(ctx_out: bytes) -> bool:
    """stat_by_id's answer (struct stat_args: key 16 bytes, then found): True when it found the cgroup."""
    return bool(_ARGS.unpack_from(ctx_out)[3] == 1)


def _prog_run(bed: Bed) -> Callable[[], int]:
    args = _ARGS.pack(0, 0, bed.target_id, 0, 0) + bytes(_HIST.size)

    def op() -> int:
        _, out = ffi.prog_test_run_ctx(bed.prog_fd, args, "stat_by_id")
        return _format_raw(out[_ARGS.size:]) if prog_found(out) else 0
    return op


def _iter_per_read(bed: Bed) -> Callable[[], int]:
    reader = bed.loaded.reader
    cg_fd = os.open(bed.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # closed with the process

    def op() -> int:
        with ffi.attach_cgroup_iter(reader, cg_fd, bed.target) as link:
            text = ffi.iter_read(link, what=bed.target).decode()
        return parse_stat(text).summary.get("total_ns", 0)
    return op


class _CgroupStatsCmd(genlmsg):  # type: ignore[misc]
    nla_map = (("CGROUPSTATS_CMD_ATTR_UNSPEC", "none"), ("CGROUPSTATS_CMD_ATTR_FD", "uint32"))


class _CgroupStatsMsg(genlmsg):  # type: ignore[misc]
    nla_map = (("CGROUPSTATS_TYPE_UNSPEC", "none"), ("CGROUPSTATS_TYPE_CGROUP_STATS", "hex"))


def netlink_reader(cgroup_dir: str) -> Callable[[], int]:
    """CGROUPSTATS_CMD_GET through pyroute2's generic netlink socket (it has no helper for it):
    nr_sleeping + nr_running + nr_stopped + nr_uninterruptible + nr_io_wait of the cgroup."""
    sock = GenericNetlinkSocket()
    sock.bind("TASKSTATS", _CgroupStatsMsg)
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def op() -> int:
        msg = _CgroupStatsCmd()
        msg["cmd"] = CGROUPSTATS_CMD_GET
        msg["version"] = 1
        msg["attrs"].append(["CGROUPSTATS_CMD_ATTR_FD", fd])
        reply = sock.nlm_request(msg, sock.prid, msg_flags=NLM_F_REQUEST)
        raw = bytes.fromhex(reply[0].get_attr("CGROUPSTATS_TYPE_CGROUP_STATS").replace(":", ""))
        return sum(struct.unpack("=5Q", raw[:40]))
    return op


def _xattr_set(path: str) -> Callable[[], int]:
    counter = [0]

    def op() -> int:
        counter[0] += 1
        os.setxattr(path, XATTR, str(counter[0]).encode())
        return counter[0]
    return op


def _xattr_get(path: str) -> Callable[[], int]:
    return lambda: int(os.getxattr(path, XATTR))


def _map_update(bed: Bed) -> Callable[[], int]:
    key = cg_key(0, bed.target_id)
    counter = [0]

    def op() -> int:
        counter[0] += 1
        ffi.map_update(bed.knob_fd, key, struct.pack("=Q", counter[0]), "knobs")
        return counter[0]
    return op


def _v1(bed: Bed, ctrl: str, *, key: str, label: str, what: str, python: Callable[[str], Callable[[], int]],
        cloop: Callable[[str], list[str]]) -> Mechanism:
    path = bed.v1.get(ctrl)
    if path is None:
        return Mechanism(key, label, "read", what, None, None, f"no cgroup-v1 {ctrl} hierarchy on this host")
    return Mechanism(key, label, "read", what, python(path), cloop(path))


def read_mechanisms(bed: Bed) -> list[Mechanism]:
    cpu_stat = os.path.join(bed.target, "cpu.stat")
    cgid = str(bed.target_id)
    return [
        Mechanism("mirror_iter", "user-space mirror: pinned cgroup iterator file", "read", "hist_oncpu",
                  _parse_file(bed.mirror_file, "total_ns"), ["file", bed.mirror_file, "total_ns"]),
        Mechanism("prog_run", "pinned BPF_PROG_RUN program (SYSCALL, cgroup id in)", "read", "hist_oncpu",
                  _prog_run(bed), ["progrun", bed.progrun_pin, "0", cgid]),
        Mechanism("map_lookup", "pinned map lookup by cgroup id + formatting", "read", "hist_oncpu",
                  _map_lookup(bed), ["map", bed.map_pin, "0", cgid]),
        Mechanism("iter_per_read", "cgroup iterator created per read (no pinned link)", "read", "hist_oncpu",
                  _iter_per_read(bed), ["iter", bed.reader_pin, bed.target, "total_ns"]),
        Mechanism("cpu_stat", "cgroupfs v2 cpu.stat, parsed", "read", "usage_usec",
                  _kv_file(cpu_stat, "usage_usec", 1000), ["file", cpu_stat, "usage_usec"]),
        _v1(bed, "cpuacct", key="cpuacct_usage", label="cgroupfs v1 cpuacct.usage", what="on-CPU ns (v1)",
            python=lambda p: _single_value(os.path.join(p, "cpuacct.usage")),
            cloop=lambda p: ["file", os.path.join(p, "cpuacct.usage"), ""]),
        _v1(bed, "memory", key="memory_stat", label="cgroupfs v1 memory.stat, parsed whole", what="rss (v1)",
            python=lambda p: _kv_file(os.path.join(p, "memory.stat"), "rss"),
            cloop=lambda p: ["file", os.path.join(p, "memory.stat"), "rss"]),
        _v1(bed, "cpu", key="netlink", label="netlink CGROUPSTATS (taskstats, pyroute2)",
            what="task-state counts (v1)", python=netlink_reader, cloop=lambda p: ["netlink", p]),
    ]


def knob_mechanisms(bed: Bed) -> list[Mechanism]:
    cgid = str(bed.target_id)
    return [
        Mechanism("xattr_set", "cgroupfs user.* xattr: set", "knob", "u64 knob", _xattr_set(bed.target),
                  ["xattr_set", bed.target, XATTR]),
        Mechanism("xattr_get", "cgroupfs user.* xattr: get", "knob", "u64 knob", _xattr_get(bed.target),
                  ["xattr_get", bed.target, XATTR]),
        Mechanism("map_update", "pinned map update by cgroup id", "knob", "u64 knob", _map_update(bed),
                  ["mapupdate", bed.knob_pin, "0", cgid]),
    ]
