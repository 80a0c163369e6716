"""The mechanisms compared, each real code reading the same stat of the same cgroup (bed.Bed).

A Mechanism has a Python operation (what a Python user writes) and the C loop's arguments
(bench/report/readloop.c). hist_oncpu's reads come in two declared variants of equal work, so no
route is timed doing more than another (the runner checks the outputs are equal: equal.py):
  "full text"  every route ends with the program's full text (cgroup_id, total_ns, slices, the
               log2 histogram: the bytes of the mirror's file) in a user-space buffer, unparsed;
  "raw value"  every route ends with total_ns as a number.
An operation returns what it produced (the text's bytes, or the number); the loops report the
number (total_ns, parsed from a text after the timed loop), so every row shows the same cgroup.

Full text (variant FULL):
  mirror_iter    the user-space mirror's pinned cgroup iterator file: open + read + close
  iter_per_read  a cgroup iterator made per read (link + iterator fd) from the pinned reader
                 program, without a pinned link: link, iterator, read, close
  prog_run_text  a pinned BPF_PROG_TYPE_SYSCALL program (stat_text) writing the text into its
                 context: one BPF_PROG_RUN
  map_text       the pinned stats map read by cgroup id, the text formatted in user space (C:
                 snprintf in readloop.c; Python: histogram.format_stat)
Raw value (variant RAW):
  total_file     a pinned iterator file whose program prints total_ns alone: open + read + close
                 + the number parsed
  iter_total_per_read  that program's iterator made per read
  prog_run       a pinned BPF_PROG_TYPE_SYSCALL program (stat_by_id), BPF_PROG_RUN with the
                 cgroup id in, the raw struct out: total_ns taken from it
  map_lookup     the pinned stats map read by cgroup id: total_ns taken from the raw struct
Other figures (no variant: the kernel's own files, baselines and context):
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
from bpffs_sync.libbpf import BpfProgram
from bpffs_sync.loader import cg_key
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report.bed import XATTR, Bed

MAX_SLOTS = 27
_HIST = struct.Struct(f"=QQ{MAX_SLOTS}Q")  # struct hist_value
HIST_SIZE = _HIST.size
_ARGS = struct.Struct("=IIQII")  # struct stat_args up to value; struct text_args up to text
TEXT_MAX = 4096  # stat_by_id.bpf.c's
CGROUPSTATS_CMD_GET = 4


FULL, RAW = "full text", "raw value"
VARIANTS = (FULL, RAW)
Output = int | bytes  # what an operation produced: a number, or a text's bytes


@dataclass(frozen=True, slots=True)
class Mechanism:
    key: str
    label: str
    kind: str  # "read" or "knob"
    what: str  # the figure it reads, in words
    python: Callable[[], Output] | None  # None: no Python loop (the reason is in `missing`)
    cloop: list[str] | None  # readloop MODE ARGS (N goes after MODE)
    missing: str = ""  # why this mechanism cannot run here (then python and cloop are None)
    variant: str = ""  # FULL or RAW for hist_oncpu's routes, "" for another figure


def value_of(out: Output) -> int:
    """The number an operation's output carries: itself, or a text's total_ns (0 when it has none)."""
    if isinstance(out, int):
        return out
    return parse_stat(out.decode()).summary.get("total_ns", 0)


def format_text(raw: bytes | None, cgroup_id: int) -> bytes:
    """hist_oncpu's reader's text from the map's raw struct hist_value (None: no entry, zeros)."""
    total, count, *slots = _HIST.unpack(raw) if raw is not None else (0, 0)
    return format_stat(StatFile({"cgroup_id": cgroup_id, "total_ns": total, "slices": count}, "usecs",
                                list(slots))).encode()


def _read_bytes(path: str) -> Callable[[], Output]:
    def op() -> Output:
        with open(path, "rb") as f:
            return f.read()
    return op


def _kv_file(path: str, key: str, scale: int = 1) -> Callable[[], int]:
    """A cgroupfs `key value` file (cpu.stat, memory.stat), parsed whole like a real reader."""
    def op() -> int:
        with open(path, encoding="utf-8") as f:
            fields = dict(line.split(" ", 1) for line in f.read().splitlines())
        return int(fields[key]) * scale
    return op


def _single_value(path: str) -> Callable[[], Output]:
    def op() -> Output:
        with open(path, encoding="utf-8") as f:
            return int(f.read())
    return op


def _map_lookup(bed: Bed) -> Callable[[], Output]:
    key = cg_key(0, bed.target_id)

    def op() -> Output:
        raw = ffi.map_lookup(bed.map_fd, key, _HIST.size, "oncpu_stats")
        return int(_HIST.unpack_from(raw)[0]) if raw is not None else 0
    return op


def _map_text(bed: Bed) -> Callable[[], Output]:
    key = cg_key(0, bed.target_id)

    def op() -> Output:
        return format_text(ffi.map_lookup(bed.map_fd, key, _HIST.size, "oncpu_stats"), bed.target_id)
    return op


def prog_found(ctx_out: bytes) -> bool:
    """stat_by_id's answer (struct stat_args: key 16 bytes, then found): True when it found the cgroup."""
    return bool(_ARGS.unpack_from(ctx_out)[3] == 1)


def stat_args(cgroup_id: int) -> bytes:
    """stat_by_id's context: struct stat_args {cg_key key; u32 found; u32 pad; struct hist_value value}."""
    return _ARGS.pack(0, 0, cgroup_id, 0, 0) + bytes(_HIST.size)


def prog_total(ctx_out: bytes) -> int | None:
    """total_ns from stat_by_id's answer, None when it did not find the cgroup."""
    return int(_HIST.unpack_from(ctx_out, _ARGS.size)[0]) if prog_found(ctx_out) else None


def _prog_run(bed: Bed) -> Callable[[], Output]:
    args = stat_args(bed.target_id)

    def op() -> Output:
        _, out = ffi.prog_test_run_ctx(bed.prog_fd, args, "stat_by_id")
        return prog_total(out) or 0
    return op


def text_args(cgroup_id: int) -> bytes:
    """stat_text's context: struct text_args {cg_key key; u32 found; u32 len; char text[TEXT_MAX]}."""
    return _ARGS.pack(0, 0, cgroup_id, 0, 0) + bytes(TEXT_MAX)


def text_out(ctx_out: bytes) -> bytes:
    """The text stat_text wrote into its context."""
    length = _ARGS.unpack_from(ctx_out)[4]
    return ctx_out[_ARGS.size:_ARGS.size + length]


def _prog_run_text(bed: Bed) -> Callable[[], Output]:
    args = text_args(bed.target_id)

    def op() -> Output:
        _, out = ffi.prog_test_run_ctx(bed.text_fd, args, "stat_text")
        return text_out(out)
    return op


def _iter_per_read(bed: Bed, reader: BpfProgram, number: bool) -> Callable[[], Output]:
    cg_fd = os.open(bed.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # closed with the process

    def op() -> Output:
        with ffi.attach_cgroup_iter(reader, cg_fd, bed.target) as link:
            out = ffi.iter_read(link, what=bed.target)
        return int(out) if number else out
    return op


class _CgroupStatsCmd(genlmsg):  # type: ignore[misc]
    nla_map = (("CGROUPSTATS_CMD_ATTR_UNSPEC", "none"), ("CGROUPSTATS_CMD_ATTR_FD", "uint32"))


class _CgroupStatsMsg(genlmsg):  # type: ignore[misc]
    nla_map = (("CGROUPSTATS_TYPE_UNSPEC", "none"), ("CGROUPSTATS_TYPE_CGROUP_STATS", "hex"))


NETLINK_STATES = ("nr_sleeping", "nr_running", "nr_stopped", "nr_uninterruptible", "nr_io_wait")  # struct cgroupstats


class NetlinkStates:
    """CGROUPSTATS_CMD_GET through pyroute2's generic netlink socket (it has no helper for it): a call
    gives the cgroup's struct cgroupstats, NETLINK_STATES -> count. The kernel counts a task by its
    exact __state, so a task asleep in nanosleep (TASK_INTERRUPTIBLE | TASK_FREEZABLE) counts in no
    field (netlink_check.py shows it). close() drops the socket and the directory fd."""

    def __init__(self, cgroup_dir: str) -> None:
        self._sock = GenericNetlinkSocket()
        self._sock.bind("TASKSTATS", _CgroupStatsMsg)
        self._fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def __call__(self) -> dict[str, int]:
        msg = _CgroupStatsCmd()
        msg["cmd"] = CGROUPSTATS_CMD_GET
        msg["version"] = 1
        msg["attrs"].append(["CGROUPSTATS_CMD_ATTR_FD", self._fd])
        reply = self._sock.nlm_request(msg, self._sock.prid, msg_flags=NLM_F_REQUEST)
        raw = bytes.fromhex(reply[0].get_attr("CGROUPSTATS_TYPE_CGROUP_STATS").replace(":", ""))
        return dict(zip(NETLINK_STATES, struct.unpack("=5Q", raw[:40]), strict=True))

    def close(self) -> None:
        self._sock.close()
        os.close(self._fd)


def netlink_states(cgroup_dir: str) -> NetlinkStates:
    return NetlinkStates(cgroup_dir)


def netlink_reader(cgroup_dir: str) -> Callable[[], int]:
    """The netlink row: nr_sleeping + nr_running + nr_stopped + nr_uninterruptible + nr_io_wait."""
    states = netlink_states(cgroup_dir)
    return lambda: sum(states().values())


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


def _v1(bed: Bed, ctrl: str, *, key: str, label: str, what: str, python: Callable[[str], Callable[[], Output]],
        cloop: Callable[[str], list[str]]) -> Mechanism:
    path = bed.v1.get(ctrl)
    if path is None:
        return Mechanism(key, label, "read", what, None, None, f"no cgroup-v1 {ctrl} hierarchy on this host")
    return Mechanism(key, label, "read", what, python(path), cloop(path))


ROUTES = {  # hist_oncpu's routes in each variant, the file first (the ratios' denominator is BPF_PROG_RUN)
    FULL: ("mirror_iter", "iter_per_read", "prog_run_text", "map_text"),
    RAW: ("total_file", "iter_total_per_read", "prog_run", "map_lookup"),
}


# Under churn, one route per interface: the variants differ in the work after the syscalls, not in the
# locks the syscalls take (the other routes would only lengthen the run).
UNDER_CHURN = ("mirror_iter", "iter_per_read", "prog_run", "map_lookup")


def churned(mechs: list[Mechanism]) -> list[Mechanism]:
    """The read mechanisms measured under churn: UNDER_CHURN and every mechanism of another figure."""
    return [m for m in mechs if m.key in UNDER_CHURN or not m.variant]


def read_mechanisms(bed: Bed) -> list[Mechanism]:
    cpu_stat = os.path.join(bed.target, "cpu.stat")
    cgid = str(bed.target_id)
    full, raw = "hist_oncpu, full text", "hist_oncpu total_ns, raw value"
    return [
        Mechanism("mirror_iter", "user-space mirror: pinned cgroup iterator file, read whole", "read", full,
                  _read_bytes(bed.mirror_file), ["text", bed.mirror_file], variant=FULL),
        Mechanism("iter_per_read", "cgroup iterator created per read (no pinned link), read whole", "read", full,
                  _iter_per_read(bed, bed.loaded.reader, False), ["iter", bed.reader_pin, bed.target],
                  variant=FULL),
        Mechanism("prog_run_text", "pinned BPF_PROG_RUN program writing the text into its context (stat_text)",
                  "read", full, _prog_run_text(bed), ["progtext", bed.text_pin, "0", cgid], variant=FULL),
        Mechanism("map_text", "pinned map lookup by cgroup id + the text formatted in user space", "read", full,
                  _map_text(bed), ["maptext", bed.map_pin, "0", cgid], variant=FULL),
        Mechanism("total_file", "pinned iterator file printing total_ns alone (total_only), parsed", "read", raw,
                  _single_value(bed.total_file), ["file", bed.total_file, ""], variant=RAW),
        Mechanism("iter_total_per_read", "total_only's iterator created per read, parsed", "read", raw,
                  _iter_per_read(bed, bed.total_reader, True), ["iter", bed.total_reader_pin, bed.target, ""],
                  variant=RAW),
        Mechanism("prog_run", "pinned BPF_PROG_RUN program returning the raw struct (stat_by_id)", "read", raw,
                  _prog_run(bed), ["progrun", bed.progrun_pin, "0", cgid], variant=RAW),
        Mechanism("map_lookup", "pinned map lookup by cgroup id, the raw struct (no formatting)", "read", raw,
                  _map_lookup(bed), ["map", bed.map_pin, "0", cgid], variant=RAW),
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
