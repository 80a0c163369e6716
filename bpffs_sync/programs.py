"""The catalogue of stat programs bpffs-sync ships, and where their objects are.

A stat's file name is its reader program's name. Collectors fill `stats_map`, which the loader
pins under <bpffs>/bpffs-sync/<stat>/ so a restarted daemon adopts it with the collector link.
A stat with no collector (memcg_stat: its reader asks the kernel through kfuncs at each read)
has no stats map either: nothing of it is pinned in its private directory, nothing is healed.

A reader in a sleepable section (SEC("iter.s/cgroup"), SEC("cgroup/stat.s")) is loaded with
BPF_F_SLEEPABLE: the loader reads the section name from the object (loader.LoadedStat), so the
object, not the catalogue, says it. A stat whose reader calls kfuncs names them (`kfuncs`): a
kernel whose BTF lacks one is refused in one line before anything is loaded (require_kfuncs).

A knob (`knob=True`: oncpu_weight) is a stat whose file also takes writes: its reader serves both
(ctx->data, ctx->size), which only the kernel-approach1 series has (13/15: links made with
BPF_F_CGROUP_STAT_WRITE, kernel_a1.KernelMirror). It is kernel-only: a kernel without the series'
writable files is refused in one line (require_kfuncs), and so is the user-space mirror on any
kernel (object_path: its iterator build is never loaded). Its stats map is cgroup storage, not a
hash keyed by struct cg_key: nothing but the kernel mode, which never forgets cgroups by key, uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bpffs_sync import btf, series
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, UsageError


@dataclass(frozen=True, slots=True)
class Collector:
    programs: tuple[str, ...]  # attached together, pinned as collector, collector1, ...
    probe_typedef: str | None  # BTF typedef that must exist for this variant (None: always usable)


@dataclass(frozen=True, slots=True)
class Kfuncs:
    """Kernel functions a reader calls, and which kernels have them (for the refusal's words)."""

    names: tuple[str, ...]  # each a BTF FUNC of the kernel's vmlinux
    since: str  # e.g. "the memcg kfuncs, Linux 7.0 and later"


@dataclass(frozen=True, slots=True)
class StatProgram:
    name: str
    object_file: str
    stats_map: str | None  # None: no collector, no state; the reader computes everything per read
    collectors: tuple[Collector, ...]  # in order of preference; exactly one is loaded; () with no stats_map
    description: str
    kfuncs: Kfuncs | None = None  # checked against the kernel's BTF before loading (require_kfuncs)
    knob: bool = False  # its files take writes: Approach 1's writable links only (see the module docstring)

    def __post_init__(self) -> None:
        if (self.stats_map is None) != (not self.collectors):
            raise ValueError(f"{self.name}: a stats map needs a collector to fill it, and a collector a map")

    def map_name(self) -> str:
        """stats_map, for code that only handles stats with a map (ValueError for one without)."""
        if self.stats_map is None:
            raise ValueError(f"{self.name} has no stats map")
        return self.stats_map


CATALOGUE: dict[str, StatProgram] = {
    "hist_oncpu": StatProgram(
        name="hist_oncpu",
        object_file="hist_oncpu.bpf.o",
        stats_map="oncpu_stats",
        collectors=(
            Collector(("oncpu_tp_btf",), "btf_trace_sched_switch"),
            Collector(("oncpu_raw_tp",), None),
        ),
        description="on-CPU time and log2 histogram of on-CPU slice lengths (usecs), hierarchical",
    ),
    "memcg_histo": StatProgram(
        name="memcg_histo",
        object_file="memcg_histo.bpf.o",
        stats_map="memcg_stats",
        collectors=(
            Collector(("memcg_begin_btf", "memcg_end_btf"), "btf_trace_mm_vmscan_memcg_reclaim_begin"),
            Collector(("memcg_begin_raw", "memcg_end_raw"), None),
        ),
        description="memcg usage/limit/failcnt from the page counters and a log2 histogram of reclaim stalls",
    ),
    "memcg_stat": StatProgram(
        name="memcg_stat",
        object_file="memcg_stat.bpf.o",
        stats_map=None,
        collectors=(),
        description="memory.stat's state lines (bytes) and pgfault/pgmajfault, read through the memcg kfuncs",
        kfuncs=Kfuncs(
            (
                "bpf_mem_cgroup_page_state",
                "bpf_mem_cgroup_vm_events",
                "bpf_mem_cgroup_flush_stats",
                "bpf_get_mem_cgroup",
                "bpf_put_mem_cgroup",
            ),
            "the memcg kfuncs of mm/bpf_memcontrol.c, Linux 7.0 and later",
        ),
    ),
    "oncpu_weight": StatProgram(
        name="oncpu_weight",
        object_file="oncpu_weight.bpf.o",
        stats_map="oncpu_weights",  # cgroup storage: weight and weighted_ns per cgroup
        collectors=(Collector(("weight_tp_btf",), None),),  # tp_btf only: cgroup storage needs a trusted cgroup
        description="a knob: the cgroup's weight (0..1000, default 100; write it) and its own on-CPU time "
                    "scaled by it (weighted_ns); Approach 1 kernels only",
        knob=True,
    ),
}
DEFAULT_PROGRAMS: tuple[str, ...] = ("hist_oncpu",)


class UnknownProgram(UsageError):
    pass


def lookup(name: str) -> StatProgram:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownProgram("program", name, 0, f"unknown stat program (known: {known})") from None


def missing_kfuncs(spec: StatProgram) -> list[str]:
    """The kfuncs spec's reader calls that the running kernel's BTF has no FUNC of (all of them
    when the BTF cannot be read); [] when it needs none."""
    if spec.kfuncs is None:
        return []
    found = btf.vmlinux_or_none(funcs=spec.kfuncs.names)
    have = found.funcs if found is not None else frozenset()
    return [n for n in spec.kfuncs.names if n not in have]


def writable_files() -> bool:
    """Does the running kernel have the series' writable cgroup stat files (13/15: its BTF names
    BPF_F_CGROUP_STAT_WRITE)?"""
    uapi = series.carried().uapi
    return uapi is not None and uapi.write_flag is not None


def require_kfuncs(spec: StatProgram) -> None:
    """Refuse (KernelUnsupported, one line) a stat this kernel cannot load: one whose reader calls
    kfuncs this kernel lacks, or a knob on a kernel without the series' writable files."""
    if spec.knob and not writable_files():
        raise KernelUnsupported(
            "stat program", spec.name, 0,
            f"a knob: needs the kernel-approach1 series' writable cgroup stat files ({series.WRITE_FLAG}); "
            f"this kernel ({os.uname().release}) has none, and a stock kernel cannot run it",
        )
    missing = missing_kfuncs(spec)
    if missing and spec.kfuncs is not None:
        raise KernelUnsupported(
            "stat program",
            spec.name,
            0,
            f"needs {spec.kfuncs.since}; this kernel ({os.uname().release}) has no "
            f"{missing[0]}" + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""),
        )


PACKAGED_OBJECTS = Path(__file__).resolve().parent / "bpf_objects"


def object_dir() -> Path:
    """Where the BPF objects are: $BPFFS_SYNC_BPF_DIR; else the objects an installed wheel carries
    (bpffs_sync/bpf_objects, compiled CO-RE at build time by setup.py); else build/bpf next to the
    source tree (an editable install, `make bpf`)."""
    env = os.environ.get("BPFFS_SYNC_BPF_DIR")
    if env:
        return Path(env)
    if (PACKAGED_OBJECTS / CATALOGUE["hist_oncpu"].object_file).is_file():
        return PACKAGED_OBJECTS
    return Path(__file__).resolve().parent.parent / "build" / "bpf"


def object_path(spec: StatProgram, cgroup_stat: bool = False) -> str:
    """The stat's object: built as SEC("iter/cgroup"), or as SEC("cgroup/stat") with cgroup_stat
    (the kernel series' program type). A knob has no iterator build to load: refused, one line."""
    if spec.knob and not cgroup_stat:
        raise UsageError("stat program", spec.name, 0, "a knob: only Approach 1's kernel links serve it "
                         "(`bpffs-sync run --kernel --program " + spec.name + "`), never the user-space mirror")
    name = spec.object_file.replace(".bpf.o", ".stat.bpf.o") if cgroup_stat else spec.object_file
    path = object_dir() / name
    if not path.is_file():
        raise EnvironmentProblem("bpf object", str(path), 0, "not built (run `make bpf`, or install the wheel)")
    return str(path)
